"""The batch processor both consumers share: decode, dedupe, write, checkpoint, respond.

Ordering and failure reporting live here; the sink only applies records. On the first failure the
processor stops, advances the checkpoint past what took effect and reports that record's sequence
number as the only ``itemIdentifier`` (reporting later ones would re-deliver records that succeeded).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from consumers.core.checkpoint import CheckpointStore
from consumers.core.decode import Decoder, shard_of
from consumers.core.event_ids import EventIdStore, within_batch
from consumers.core.quarantine import Quarantine
from consumers.core.records import UserRecord
from consumers.core.sink import PartialWrite, Sink

log = logging.getLogger("consumers")


@dataclass(slots=True)
class BatchStats:
    """What one invocation did, for the log line and the checkpoint's counters."""

    records_in: int = 0
    written: int = 0
    duplicates_delivery: int = 0
    duplicates_event: int = 0
    quarantined: int = 0


class BatchProcessor:
    """Processes one Lambda Kinesis event for one consumer (all records come from one shard)."""

    def __init__(
        self,
        consumer: str,
        decoder: Decoder,
        checkpoints: CheckpointStore,
        sink: Sink,
        quarantine: Quarantine,
        event_ids: str | EventIdStore = "batch",
    ) -> None:
        self.consumer = consumer
        self.decoder = decoder
        self.checkpoints = checkpoints
        self.sink = sink
        self.quarantine = quarantine
        self.event_ids = event_ids

    def _dedupe_ids(self, records: list[UserRecord]) -> list[UserRecord]:
        if self.event_ids == "off":
            return records
        if isinstance(self.event_ids, EventIdStore):
            return self.event_ids.filter(records)
        return within_batch(records)

    def process(self, event: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
        """Handle one event; return the partial batch response."""
        started = time.perf_counter()
        raw_records = event.get("Records") or []
        if not raw_records:
            return {"batchItemFailures": []}
        shard_id = shard_of(raw_records[0])
        checkpoint = self.checkpoints.load(shard_id)
        floor = checkpoint.position
        if checkpoint.intent is not None and self.sink.resolve_intent(shard_id, checkpoint.intent):
            if floor is None or checkpoint.intent.position > floor:
                floor = checkpoint.intent.position

        decoded, poison = self.decoder.decode(raw_records)
        stats = BatchStats(records_in=len(decoded) + len(poison))
        if floor is not None:
            fresh = [r for r in decoded if r.position > floor]
            poison = [p for p in poison if p.position > floor]
        else:
            fresh = decoded
        stats.duplicates_delivery = len(decoded) - len(fresh)
        unique = self._dedupe_ids(fresh)
        stats.duplicates_event = len(fresh) - len(unique)

        last_position = (
            max([r.position for r in decoded] + [p.position for p in poison] + [floor or ""]) or None
        )
        failures: list[dict[str, str]] = []
        if poison:
            self.quarantine.put(shard_id, poison)
            stats.quarantined = len(poison)

        def announce(keys: list[str], position: str) -> None:
            self.checkpoints.put_intent(shard_id, keys, position)

        try:
            stats.written = self.sink.write(shard_id, unique, announce)
        except PartialWrite as partial:
            failed = partial.first_failed
            # Everything strictly before the failing record took effect (or was skipped).
            before = [r.position for r in decoded if r.position < failed.position]
            before += [p.position for p in poison if p.position < failed.position]
            last_position = max(before + [floor or ""]) or None
            failures = [{"itemIdentifier": failed.sequence_number}]
            log.warning(
                json.dumps(
                    {
                        "msg": "partial failure",
                        "consumer": self.consumer,
                        "shard": shard_id,
                        "sequence": failed.sequence_number,
                        "error": repr(partial.cause),
                    }
                )
            )
        counters = {"batches": 1, **{k: getattr(stats, k) for k in BatchStats.__slots__}}
        self.checkpoints.advance(shard_id, last_position, counters)
        log.info(
            json.dumps(
                {
                    "msg": "batch",
                    "consumer": self.consumer,
                    "shard": shard_id,
                    "first": raw_records[0]["kinesis"]["sequenceNumber"],
                    "last": raw_records[-1]["kinesis"]["sequenceNumber"],
                    "kinesis_records": len(raw_records),
                    **counters,
                    "failed": len(failures),
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                }
            )
        )
        return {"batchItemFailures": failures}
