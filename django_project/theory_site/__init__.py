"""The Django project of pytest-theory's control plane."""
