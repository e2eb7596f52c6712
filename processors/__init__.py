"""Processors: one folder per processor (``<ns>_<name>/``) plus ``runtime/``, the small
library every processor image carries. Nothing here imports Django or pytest.
"""
