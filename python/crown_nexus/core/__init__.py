"""Core systems of crown-nexus; each subpackage mirrors a section of the developer guide."""
