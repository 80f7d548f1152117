"""Shared state on Redis (``SUBRELAY_REDIS_URL``): replicas on several hosts behave as one subrelay."""
