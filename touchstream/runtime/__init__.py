"""Embedded broker and Redis, process supervision, the worker entry point and the CLI."""
