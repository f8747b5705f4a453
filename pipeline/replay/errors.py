"""The replay's errors: one readable line each, saying what failed and what to do."""

from __future__ import annotations

from pipeline.errors import PipelineError


class ReplayError(PipelineError):
    """A replay cannot start or cannot go on; the message says why and how to continue."""
