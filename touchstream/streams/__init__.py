"""Topics and the topology: which stream feeds which agent, and where it is re-keyed."""
