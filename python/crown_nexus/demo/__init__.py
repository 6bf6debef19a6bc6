"""The reference service: built only from crown-nexus's public API (SPEC §9).

``crown_nexus.demo.app:app`` is its ASGI app; ``create_app(settings=None)`` builds a fresh one.
"""
