"""Path leases: a façade for admission checks, a no-op while ``LEASES_ENABLED`` is False."""
