"""One exception hierarchy for the whole package.

Every message says what was wrong, with which input, and (where it helps) what to do next, so the
CLI can print it as one readable line.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(PipelineError):
    """A setting is missing or has a value the pipeline cannot use."""


class StackError(PipelineError):
    """The local stack cannot be started, reached or stopped."""


class PoisonRecord(PipelineError):
    """A record that can never be processed: it is quarantined, not retried.

    ``reason`` is a short machine-readable class (``bad_magic``, ``md5_mismatch`` ...).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class CorruptAggregate(PoisonRecord):
    """A record carries the KPL magic bytes but fails the MD5 check or the protobuf parse."""


class UndecodablePayload(PoisonRecord):
    """A user record's payload is not a valid event (unknown schema, truncated Avro, bad JSON)."""


class InvalidInput(PipelineError):
    """A caller handed the producer something it cannot send (wrong type, size, key)."""


class SinkError(PipelineError):
    """A sink write failed in a way that a retry of the batch may fix."""
