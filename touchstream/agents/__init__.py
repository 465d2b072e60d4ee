"""Thin Faust agents: decode, call the domain, write tables, emit, hand profiles to Redis sync."""
