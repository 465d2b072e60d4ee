"""Serving the single customer view: Redis profile sync and the HTTP views."""
