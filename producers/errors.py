"""The producer's errors: each says what went wrong with which record and what to do."""

from __future__ import annotations

from pipeline.errors import InvalidInput, PipelineError

__all__ = [
    "BackpressureTimeout",
    "InvalidInput",
    "ProducerClosed",
    "PutFailed",
    "RecordExpired",
    "StreamNotFound",
]


class RecordExpired(PipelineError):
    """A user record was not stored within ``record_ttl`` seconds of its ``put``."""


class PutFailed(PipelineError):
    """Kinesis refused a record for a reason a retry cannot fix (missing stream, access, KMS)."""


class BackpressureTimeout(PipelineError):
    """``put`` waited ``put_timeout`` seconds for room in the producer's bounded buffer."""


class ProducerClosed(PipelineError):
    """``put`` was called after ``close()``."""


class StreamNotFound(PipelineError):
    """The stream does not exist or has no open shards."""
