"""Runs a replay: history (or on-failure batches) → batches → targets, with cursor, rate and progress."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from consumers.core.checkpoint import COUNTERS, CheckpointStore
from pipeline.esm.events import RECORD_OVERHEAD
from pipeline.esm.runner import PAYLOAD_CAP
from pipeline.replay.cursor import Cursor
from pipeline.replay.errors import ReplayError
from pipeline.replay.progress import Progress, RateLimit
from pipeline.replay.ranges import Range
from pipeline.replay.records import RawRecord
from pipeline.replay.sources import DeadLetters, FailedBatch, History, parse_failure
from pipeline.replay.targets import Target


def batches(
    chunks: Iterable[Sequence[RawRecord]], size: int, cap: int = PAYLOAD_CAP
) -> Iterator[list[RawRecord]]:
    """Records regrouped into batches of at most ``size`` records and ``cap`` bytes of Lambda payload."""
    buf: list[RawRecord] = []
    nbytes = 0
    for chunk in chunks:
        for r in chunk:
            n = (len(r.data) + 2) // 3 * 4 + len(r.partition_key) + RECORD_OVERHEAD
            if buf and (len(buf) >= size or nbytes + n > cap):
                yield buf
                buf, nbytes = [], 0
            buf.append(r)
            nbytes += n
    if buf:
        yield buf


@dataclass(slots=True)
class Totals:
    """What a replay did, for the summary."""

    records: int = 0
    from_stream: int = 0
    from_archive: int = 0
    batches: int = 0
    shards: int = 0
    messages_replayed: int = 0
    messages_kept: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class Ledger:
    """Checkpoint counters of the namespaces a replay writes, read before and after it."""

    def __init__(self, ddb: Any, table: str) -> None:
        self.ddb = ddb
        self.table = table
        self.before: dict[tuple[str, str, str], dict[str, int]] = {}

    def _counters(self, namespace: str, shard_id: str) -> dict[str, int]:
        return dict(CheckpointStore(self.ddb, self.table, namespace).load(shard_id).counters)

    def touch(self, label: str, namespace: str, shard_id: str) -> None:
        """Remember the counters of (namespace, shard) before the replay writes to it."""
        key = (label, namespace, shard_id)
        if key not in self.before:
            self.before[key] = self._counters(namespace, shard_id)

    def deltas(self) -> dict[str, Counter[str]]:
        """Per label (consumer), what the replay added to each counter."""
        out: dict[str, Counter[str]] = {}
        for (label, namespace, shard_id), before in self.before.items():
            after = self._counters(namespace, shard_id)
            c = out.setdefault(label, Counter())
            for name in COUNTERS:
                c[name] += after.get(name, 0) - before.get(name, 0)
        return out


class Replay:
    """One replay run's shared machinery: batching, rate, progress, totals and the ledger."""

    def __init__(
        self,
        batch_size: int = 1000,
        rate: float = 0.0,
        progress: Progress | None = None,
        ledger: Ledger | None = None,
        parallel: int = 1,
    ) -> None:
        # A batch never holds more than a second's worth of the rate, so the limit stays smooth.
        self.batch_size = max(1, min(batch_size, int(rate) if rate >= 1 else batch_size))
        self.limit = RateLimit(rate)
        self.progress = progress or Progress(enabled=False)
        self.ledger = ledger
        self.parallel = max(1, parallel)
        self.totals = Totals()
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._fractions: dict[str, float] = {}

    def _deliver(self, targets: Sequence[Target], shard_id: str, batch: list[RawRecord]) -> None:
        with self._lock:
            self.limit.wait(len(batch))
            if self.ledger is not None:
                for t in targets:
                    ns = getattr(t, "namespace", None)
                    if ns:
                        self.ledger.touch(getattr(t, "consumer", t.name), ns, shard_id)
            if len(targets) > 1 and self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=len(targets) * self.parallel, thread_name_prefix="replay-target"
                )
        if len(targets) == 1 or self._pool is None:
            targets[0].deliver(shard_id, batch)
        else:
            # Consumers are independent (own checkpoints, own sinks): feed them side by side.
            futures = [self._pool.submit(t.deliver, shard_id, batch) for t in targets]
            errors = [f.exception() for f in futures]
            for e in errors:
                if e is not None:
                    raise e
        archived = sum(1 for r in batch if r.origin == "archive")
        with self._lock:
            self.totals.records += len(batch)
            self.totals.batches += 1
            self.totals.from_archive += archived
            self.totals.from_stream += len(batch) - archived

    def _report(self, shard_id: str, records: int, fraction: float, shards: int) -> None:
        with self._lock:
            self._fractions[shard_id] = min(max(fraction, 0.0), 1.0)
            self.progress.update(records, sum(self._fractions.values()) / max(shards, 1))

    def _shard(
        self,
        history: History,
        shard_id: str,
        rng: Range,
        targets: Sequence[Target],
        cursor: Cursor,
        end_time: float,
        final: bool,
        shards: int,
    ) -> None:
        with self._lock:
            after = cursor.after(shard_id)
        plan = history.plan(shard_id, rng, after)
        with self._lock:
            self.totals.shards += 1
            if plan.gap:
                self.totals.warnings.append(
                    f"{shard_id}: the range starts at sequence {plan.wanted_from}, the stream at "
                    f"{plan.stream_start}, and the archive holds nothing in between; those records are gone"
                )
        first: float | None = None
        for batch in batches(history.read(plan, rng, after), self.batch_size):
            if self._stop.is_set():
                return
            self._deliver(targets, shard_id, batch)
            with self._lock:
                cursor.advance(shard_id, batch[-1].sequence_number)
            first = batch[0].arrival if first is None else first
            span = end_time - first
            self._report(
                shard_id, len(batch), (batch[-1].arrival - first) / span if span > 0 else 0.0, shards
            )
        if self._stop.is_set():
            return
        with self._lock:
            if final:
                cursor.finish(shard_id)
        self._report(shard_id, 0, 1.0, shards)

    def history(
        self,
        history: History,
        shard_ids: Sequence[str],
        rng: Range,
        targets: Sequence[Target],
        cursor: Cursor,
    ) -> Totals:
        """Deliver every shard's range to every target, saving the cursor after each batch.

        Shards are independent (ordering holds within a shard), so up to ``parallel`` run at once.
        """
        started = time.time()
        end_time = rng.to_time if rng.to_time is not None else started
        # A range that ends in the past is final once read; an open one continues on the next run.
        final = rng.bounded and (rng.to_time is None or rng.to_time < started)
        todo = [s for s in shard_ids if s not in cursor.finished]
        for s in shard_ids:
            if s in cursor.finished:
                self._fractions[s] = 1.0
        args = (rng, targets, cursor, end_time, final, len(shard_ids))
        if self.parallel == 1 or len(todo) <= 1:
            for shard_id in todo:
                self._shard(history, shard_id, *args)
        else:
            pool = ThreadPoolExecutor(
                max_workers=min(self.parallel, len(todo)), thread_name_prefix="replay-shard"
            )
            try:
                futures = [pool.submit(self._shard, history, shard_id, *args) for shard_id in todo]
                for f in as_completed(futures):
                    f.result()
            except BaseException:
                # First error or Ctrl-C: in-flight batches end (their cursor is saved), no new ones start.
                self._stop.set()
                for t in targets:
                    cancel = getattr(t, "cancel", None)
                    if cancel is not None:
                        cancel()
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        if final:
            cursor.mark_complete()
        return self.totals

    def dead_letters(
        self,
        queue: DeadLetters,
        history_for: Callable[[FailedBatch], History],
        targets_for: Callable[[FailedBatch], list[Target]],
    ) -> Totals:
        """Replay every on-failure batch of the queue; delete each message only after success."""
        expected = max(queue.count(), 1)
        seen: set[str] = set()
        kept: list[str] = []  # hidden until the end, so one run does not see them twice
        try:
            while True:
                messages = [m for m in queue.receive() if m[0] not in seen]
                if not messages:
                    break
                for message_id, handle, body in messages:
                    seen.add(message_id)
                    try:
                        batch = parse_failure(message_id, handle, body)
                    except ReplayError as exc:
                        kept.append(handle)
                        self.totals.messages_kept.append(str(exc))
                        continue
                    try:
                        found = self._one_batch(batch, history_for(batch), targets_for)
                    except BaseException:
                        queue.release(handle)
                        raise
                    if found == 0 or (batch.batch_size and found < batch.batch_size):
                        kept.append(handle)
                        self.totals.messages_kept.append(
                            f"message {message_id}: {batch.shard_id} {batch.start}..{batch.end} holds "
                            f"{found} of {batch.batch_size} records in the stream and the archive; kept"
                        )
                        continue
                    queue.delete(handle)
                    self.totals.messages_replayed += 1
                    self.progress.update(0, self.totals.messages_replayed / expected)
        finally:
            for handle in kept:
                queue.release(handle)
        return self.totals

    def _one_batch(
        self, batch: FailedBatch, history: History, targets_for: Callable[[FailedBatch], list[Target]]
    ) -> int:
        plan = history.plan(batch.shard_id, batch.range)
        records = [r for chunk in history.read(plan, batch.range) for r in chunk]
        if not records:
            return 0
        if batch.batch_size and len(records) < batch.batch_size:
            return len(records)  # do not apply half a batch: the message stays for a look
        targets = targets_for(batch)
        try:
            for b in batches([records], self.batch_size):
                self._deliver(targets, batch.shard_id, b)
                self.progress.update(len(b), None)
        finally:
            for t in targets:
                t.close()
        return len(records)

    def close(self) -> None:
        """Stop the delivery threads."""
        if self._pool is not None:
            self._pool.shutdown()
        self.progress.finish()
