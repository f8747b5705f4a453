"""Reads PutRecords answers: what was stored (and where), what to retry, what failed for good.

Per-entry errors of PutRecords are ``ProvisionedThroughputExceededException`` and
``InternalFailure`` (both worth a retry) and, on encrypted streams, KMS errors (most of which a
retry cannot fix). A failed call is retried unless AWS said the request itself is wrong.
Retries wait an exponential back-off with full jitter; records past their TTL fail instead.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from producers.records import KinesisRecord

THROTTLED = "ProvisionedThroughputExceededException"
# Answers that no number of retries will turn into a success.
FATAL_ENTRY_CODES = frozenset(
    {
        "KMSDisabledException",
        "KMSInvalidStateException",
        "KMSAccessDeniedException",
        "KMSNotFoundException",
        "KMSOptInRequired",
        "AccessDeniedException",
    }
)
FATAL_CALL_CODES = FATAL_ENTRY_CODES | {
    "ResourceNotFoundException",
    "ValidationException",
    "InvalidArgumentException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
}


@dataclass(slots=True)
class Outcome:
    """What one PutRecords answer means for the Kinesis records it was about."""

    stored: list[tuple[KinesisRecord, str, str]] = field(default_factory=list)  # (record, shard, seq)
    moved: list[tuple[KinesisRecord, str, str]] = field(default_factory=list)  # stored, not where predicted
    retry: list[KinesisRecord] = field(default_factory=list)
    failed: list[tuple[KinesisRecord, str]] = field(default_factory=list)  # (record, why)
    throttled: list[KinesisRecord] = field(default_factory=list)


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (None for other exceptions)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


class Retrier:
    """Classifies answers and computes back-off delays; holds no records itself."""

    def __init__(
        self, base_delay: float = 0.1, max_delay: float = 2.0, rng: random.Random | None = None
    ) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.rng = rng or random.Random()

    def delay(self, attempts: int) -> float:
        """Back-off before attempt ``attempts + 1``: full jitter over an exponential ceiling."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** max(attempts - 1, 0))
        return self.rng.uniform(0.0, ceiling)

    def outcome(self, records: Sequence[KinesisRecord], response: dict[str, Any]) -> Outcome:
        """Match a PutRecords response to the records of its request, in order."""
        results = response.get("Records") or []
        out = Outcome()
        if len(results) != len(records):
            # A malformed answer proves nothing was stored; retrying may duplicate, never lose.
            out.retry.extend(records)
            return out
        for rec, res in zip(records, results, strict=True):
            code = res.get("ErrorCode")
            if code is None:
                shard = res["ShardId"]
                target = out.stored if shard == rec.shard_id else out.moved
                target.append((rec, shard, res["SequenceNumber"]))
            elif code in FATAL_ENTRY_CODES:
                out.failed.append((rec, f"Kinesis refused the record: {code}: {res.get('ErrorMessage', '')}"))
            else:
                if code == THROTTLED:
                    out.throttled.append(rec)
                out.retry.append(rec)
        return out

    def call_failed(self, records: Sequence[KinesisRecord], exc: BaseException) -> Outcome:
        """What a PutRecords call that raised means for its records."""
        out = Outcome()
        code = error_code(exc)
        if code in FATAL_CALL_CODES:
            why = f"PutRecords failed with {code}: {exc}; check the stream name, region and permissions"
            out.failed.extend((rec, why) for rec in records)
        else:
            if code == THROTTLED:
                out.throttled.extend(records)
            out.retry.extend(records)
        return out
