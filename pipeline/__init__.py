"""Shared core of the pipeline: wire formats, schemas, settings, AWS clients and the operator CLI."""
