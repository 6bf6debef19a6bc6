"""Cython twins of ``crown_nexus._pure`` hot paths (``rate_window``, ``permissions``).

The ``.pyx`` sources are compiled by ``setup.py`` when Cython and a C compiler are present.
"""
