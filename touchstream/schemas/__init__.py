"""The versioned contracts (JSON Schema files) and the fast decoder of inbound records."""
