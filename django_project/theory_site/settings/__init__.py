"""Settings: ``base`` (shared), ``default`` (development), ``test`` and ``production``."""
