"""Reference (pure Python) implementations of every hot path.

Each module here is the typing and behaviour truth for its compiled twin
(``crown_nexus._cython.<name>`` or ``crown_nexus_native.<name>``). Only ``crown_nexus.accel``
chooses between them; nothing else should import a twin directly except tests and benchmarks.
"""
