"""Routers of the reference service, one module per system."""
