"""The batch processor both consumers share: decode, dedupe, quarantine, write, checkpoint, respond.

Ordering and failure reporting live here; the sink only applies records. Per invocation:

1. load the shard's checkpoint (GetItem) and settle an intent left by an earlier attempt: the
   sink either finds the announced write whole (the checkpoint moves to the intent's position) or
   discards its pieces;
2. decode; drop positions at or below the checkpoint (delivery duplicates) and producer
   duplicates by event id; quarantine poison;
3. hand the rest to the sink, which announces its keys as the checkpoint's intent (UpdateItem)
   before writing, if it needs one;
4. advance the checkpoint and clear the intent (UpdateItem): three DynamoDB requests at most,
   whatever the batch size.

On the first failure the processor stops, advances the checkpoint past what took effect and
reports that record's sequence number as the only ``itemIdentifier`` (reporting later ones would
re-deliver records that succeeded). A failure that leaves nothing known raises, so that the ESM
retries or bisects the batch.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from consumers.core.checkpoint import Checkpoints
from consumers.core.decode import Decoder, shard_of
from consumers.core.event_ids import BatchDedupe, EventIdFilter
from consumers.core.quarantine import Quarantine
from consumers.core.records import Batch
from consumers.core.sink import PartialWrite, Sink
from pipeline.codecs.positions import SEQ_WIDTH, SUB_WIDTH
from pipeline.coldstart import no_collection
from pipeline.observability import logs, metrics

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
    """Processes one Lambda Kinesis event for one consumer (all records come from one shard).

    Every collaborator is handed in (KCL style), so tests can hand in ones that fail on cue.

    Args:
        consumer: the consumer's name, the checkpoint namespace (``<consumer>#<shard>``).
        decoder: turns Lambda records into user records and poison.
        checkpoints: the checkpoint store (``CheckpointStore`` in DynamoDB).
        sink: where records take effect (``LakeSink``, ``StateSink``).
        quarantine: where poison goes (``Quarantine`` in S3).
        event_ids: the producer-duplicate filter (``NoDedupe``, ``BatchDedupe``, ``EventIdStore``).

    Example:
        >>> processor = BatchProcessor(
        ...     "lake-writer", Decoder(registry), CheckpointStore(ddb, "pipeline-checkpoints", "lake-writer"),
        ...     LakeSink(s3, "pipeline-lake", "events/v1", registry.reader),
        ...     Quarantine(s3, "pipeline-lake", "quarantine/v1", "lake-writer"),
        ... )
        >>> processor.process(event)
        {'batchItemFailures': []}
    """

    def __init__(
        self,
        consumer: str,
        decoder: Decoder,
        checkpoints: Checkpoints,
        sink: Sink,
        quarantine: Quarantine,
        event_ids: EventIdFilter | None = None,
    ) -> None:
        self.consumer = consumer
        self.decoder = decoder
        self.checkpoints = checkpoints
        self.sink = sink
        self.quarantine = quarantine
        self.event_ids: EventIdFilter = event_ids if event_ids is not None else BatchDedupe()

    def process(self, event: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
        """Handle one event; return the partial batch response.

        The cyclic garbage collector is paused for the batch and resumed afterwards (unless it was
        off already): a batch keeps every record it decoded until it ends and makes no reference
        cycles worth collecting meanwhile, so collections during it only rescan what is alive. On
        the state writer's 20,000-event batches they were a tenth of its CPU."""
        with no_collection():
            return self._process(event)

    def _process(self, event: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
        started = time.perf_counter()
        raw_records = event.get("Records") or []
        if not raw_records:
            return {"batchItemFailures": []}
        # Lambda measures iterator age when the batch arrives, so take it before any work.
        iterator_age_ms, record_age_ms = metrics.record_ages_ms(raw_records)
        shard_id = shard_of(raw_records[0])
        if any(shard_of(r) != shard_id for r in raw_records):
            raise ValueError(f"{self.consumer}: one event holds records of several shards")
        checkpoint = self.checkpoints.load(shard_id)
        floor = checkpoint.position
        if checkpoint.intent is not None and self.sink.resolve_intent(shard_id, checkpoint.intent):
            # The announced write is whole: its records took effect although the checkpoint
            # never heard of it (the attempt died before advancing).
            if floor is None or checkpoint.intent.position > floor:
                floor = checkpoint.intent.position

        decoded, poison = self.decoder.decode(raw_records)
        stats = BatchStats(records_in=len(decoded) + len(poison))
        every = [r.position for r in decoded] + [p.position for p in poison]
        # A Kinesis record may hold no user record at all (an empty aggregate): it still moves the
        # checkpoint, at its sequence number, or its batch could never complete.
        carried = {r.sequence_number for r in decoded} | {p.sequence_number for p in poison}
        every += [
            f"{int(seq):0{SEQ_WIDTH}d}.{0:0{SUB_WIDTH}d}"
            for seq in (r["kinesis"]["sequenceNumber"] for r in raw_records)
            if seq not in carried
        ]
        batch_last = max(every) if every else None
        # Lambda records holding anything above the checkpoint (``above``) go to the raw archive.
        if floor is None or min(every) > floor:
            # The usual batch (``every`` is never empty) lies wholly above the checkpoint: nothing to drop.
            fresh = decoded
            above = carried
        else:
            fresh = [r for r in decoded if r.position > floor]
            poison = [p for p in poison if p.position > floor]
            above = {r.sequence_number for r in fresh} | {p.sequence_number for p in poison}
        stats.duplicates_delivery = len(decoded) - len(fresh)
        unique = self.event_ids.filter(fresh)
        stats.duplicates_event = len(fresh) - len(unique)

        floor_seq = int(floor[:SEQ_WIDTH]) if floor is not None else -1
        raw_above = tuple(
            r
            for r in raw_records
            if r["kinesis"]["sequenceNumber"] in above or int(r["kinesis"]["sequenceNumber"]) > floor_seq
        )
        known = [p for p in (batch_last, floor) if p is not None]
        last_position = max(known) if known else None

        if poison:
            self.quarantine.put(shard_id, poison)

        def announce(keys: list[str], position: str) -> None:
            self.checkpoints.put_intent(shard_id, keys, position)

        failures: list[dict[str, str]] = []
        batch = Batch(shard_id, tuple(unique), raw_above, last_position)
        try:
            stats.written = self.sink.write(batch, announce)
            stats.quarantined = len(poison)
        except PartialWrite as partial:
            failed = partial.first_failed
            # Everything strictly before the failing record took effect (or was skipped); poison
            # after it is quarantined again on the retry (same keys, same bytes), counted then.
            before = [p for p in every if p < failed.position] + ([floor] if floor is not None else [])
            last_position = max(before) if before else None
            stats.quarantined = sum(1 for p in poison if p.position < failed.position)
            stats.written = partial.applied
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
        ms = (time.perf_counter() - started) * 1000
        logs.event(
            log,
            "batch",
            consumer=self.consumer,
            shard=shard_id,
            first=raw_records[0]["kinesis"]["sequenceNumber"],
            last=raw_records[-1]["kinesis"]["sequenceNumber"],
            kinesis_records=len(raw_records),
            **counters,
            failed=len(failures),
            iterator_age_ms=round(iterator_age_ms, 1),
            record_age_ms=round(record_age_ms, 1),
            ms=round(ms, 1),
        )
        metrics.batch_metrics(
            self.consumer,
            shard_id,
            {**counters, "kinesis_records": len(raw_records), "failed": len(failures)},
            duration_ms=ms,
            iterator_age_ms=iterator_age_ms,
            record_age_ms=record_age_ms,
        )
        return {"batchItemFailures": failures}
