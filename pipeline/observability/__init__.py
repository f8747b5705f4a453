"""Seeing the pipeline: JSON logs, EMF metrics, the live status view and run reports."""
