"""Faust table definitions and their codecs."""
