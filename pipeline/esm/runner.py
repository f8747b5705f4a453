"""The local event source mapping: polls every shard, batches records into Lambda events of the
AWS shape, invokes the function and applies the mapping's settings (batch size, batching window,
6 MB payload cap, starting position, retries, record age, bisect, partial batch responses,
on-failure destination). Its settings come from the stack's Lambda API, so whatever created the
mappings (the bootstrap or Terraform) drives it.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from pipeline import aws
from pipeline.esm.events import failure_message, lambda_record, record_size
from pipeline.esm.runtime import FunctionRuntime, FunctionSpec, Invocation
from pipeline.settings import Settings

log = logging.getLogger("pipeline.esm")

PAYLOAD_CAP = 6 * 1024 * 1024
# AWS's ESM polls an idle shard once per second per mapping.
IDLE_POLL_SECONDS = 1.0
# Kinesis allows 5 GetRecords per second per shard, shared by every reader of the shard.
SHARD_READS_PER_SECOND = 5.0


@dataclass(slots=True)
class Mapping:
    """One event source mapping's settings, as the Lambda API reports them."""

    uuid: str
    function_name: str
    function_arn: str
    stream_arn: str
    batch_size: int = 100
    window: float = 0.0
    starting_position: str = "TRIM_HORIZON"
    starting_timestamp: datetime | None = None
    max_retries: int = -1
    max_record_age: int = -1
    bisect: bool = False
    report_item_failures: bool = False
    on_failure_arn: str | None = None
    parallelization: int = 1
    enabled: bool = True

    @classmethod
    def from_api(cls, m: dict[str, Any]) -> Mapping:
        """Build from a ``list_event_source_mappings`` element."""
        dest = (m.get("DestinationConfig") or {}).get("OnFailure", {}).get("Destination")
        return cls(
            uuid=m["UUID"],
            function_arn=m["FunctionArn"],
            function_name=m["FunctionArn"].split(":function:")[1].split(":")[0],
            stream_arn=m["EventSourceArn"],
            batch_size=int(m.get("BatchSize") or 100),
            window=float(m.get("MaximumBatchingWindowInSeconds") or 0),
            starting_position=m.get("StartingPosition") or "TRIM_HORIZON",
            starting_timestamp=m.get("StartingPositionTimestamp"),
            max_retries=int(m["MaximumRetryAttempts"]) if m.get("MaximumRetryAttempts") is not None else -1,
            max_record_age=int(m["MaximumRecordAgeInSeconds"])
            if m.get("MaximumRecordAgeInSeconds") is not None
            else -1,
            bisect=bool(m.get("BisectBatchOnFunctionError")),
            report_item_failures="ReportBatchItemFailures" in (m.get("FunctionResponseTypes") or []),
            on_failure_arn=dest,
            parallelization=int(m.get("ParallelizationFactor") or 1),
            enabled=m.get("State", "Enabled") in ("Enabled", "Enabling", "Updating"),
        )


@dataclass(slots=True)
class MappingStats:
    """Counters of one mapping, written to the state folder for ``pipeline status``."""

    batches: int = 0
    records: int = 0
    function_errors: int = 0
    partial_failures: int = 0
    retries: int = 0
    bisections: int = 0
    discarded_batches: int = 0
    cold_starts: int = 0
    last_result: str = ""
    positions: dict[str, str] = field(default_factory=dict)
    caught_up: dict[str, bool] = field(default_factory=dict)


class PositionStore:
    """The ESM's own position per (mapping, shard), persisted so a restart resumes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()

    def _path(self, mapping_uuid: str) -> Path:
        return self.folder / f"{mapping_uuid}.json"

    def load(self, mapping_uuid: str) -> dict[str, str]:
        """Shard id → last sequence number processed."""
        try:
            return dict(json.loads(self._path(mapping_uuid).read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def save(self, mapping_uuid: str, shard_id: str, sequence_number: str) -> None:
        """Record that everything up to ``sequence_number`` is done (atomic replace)."""
        with self.lock:
            data = self.load(mapping_uuid)
            data[shard_id] = sequence_number
            path = self._path(mapping_uuid)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            tmp.replace(path)

    def reset(self) -> None:
        """Forget every position (the next run starts from each mapping's starting position)."""
        for p in self.folder.glob("*.json"):
            p.unlink()


class EsmRunner:
    """Runs every mapping of the stack's Lambda API against the stack's Kinesis."""

    def __init__(
        self, settings: Settings, state_dir: Path | None = None, function_names: Sequence[str] | None = None
    ) -> None:
        self.settings = settings
        self.state_dir = state_dir or settings.state_dir
        self.kinesis = aws.client("kinesis", settings)
        self.lam = aws.client("lambda", settings)
        self.sqs = aws.client("sqs", settings)
        self.positions = PositionStore(self.state_dir / "esm")
        self.log_dir = self.state_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.mappings: list[Mapping] = []
        self.runtimes: dict[str, FunctionRuntime] = {}
        self.stats: dict[str, MappingStats] = {}
        self.threads: dict[tuple[str, str], threading.Thread] = {}
        self.finished: set[tuple[str, str]] = set()
        self.stop_event = threading.Event()
        self.only = set(function_names) if function_names else None
        self._roles: dict[str, str] = {}

    # -- set-up ---------------------------------------------------------------------------
    def load_mappings(self) -> list[Mapping]:
        """Read the mappings and their functions' configuration from the Lambda API."""
        mappings = []
        paginator = self.lam.get_paginator("list_event_source_mappings")
        for page in paginator.paginate():
            for m in page["EventSourceMappings"]:
                if ":kinesis:" not in m["EventSourceArn"]:
                    continue
                mapping = Mapping.from_api(m)
                if self.only and mapping.function_name not in self.only:
                    continue
                mappings.append(mapping)
        self.mappings = mappings
        for mp in mappings:
            if mp.function_name not in self.runtimes:
                config = self.lam.get_function_configuration(FunctionName=mp.function_name)
                self._roles[mp.function_name] = config.get("Role", "")
                spec = FunctionSpec.from_config(config, self.log_dir)
                # What Lambda's runtime adds to the function's own variables (region,
                # credentials of the execution role), plus the stack's endpoint.
                runtime_env = {
                    "AWS_REGION": self.settings.region,
                    "AWS_DEFAULT_REGION": self.settings.region,
                    "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_SESSION_TOKEN": "testing",
                }
                if self.settings.endpoint_url:
                    runtime_env["AWS_ENDPOINT_URL"] = self.settings.endpoint_url
                spec = replace(spec, environment={**runtime_env, **spec.environment})
                shards = len(self._shards(mp.stream_arn))
                self.runtimes[mp.function_name] = FunctionRuntime(
                    spec, concurrency=max(1, shards * mp.parallelization)
                )
            self.stats.setdefault(mp.uuid, MappingStats())
        return mappings

    def _shards(self, stream_arn: str) -> list[dict[str, Any]]:
        shards: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"StreamName": stream_arn.split("/", 1)[1]}
        while True:
            resp = self.kinesis.list_shards(**kwargs)
            shards.extend(resp["Shards"])
            if not resp.get("NextToken"):
                return shards
            kwargs = {"NextToken": resp["NextToken"]}

    # -- running --------------------------------------------------------------------------
    def start(self) -> None:
        """Start a poller thread for every ready shard of every enabled mapping."""
        if not self.mappings:
            self.load_mappings()
        self._schedule()
        threading.Thread(target=self._supervise, name="esm-supervisor", daemon=True).start()

    def _schedule(self) -> None:
        for mp in self.mappings:
            if not mp.enabled:
                continue
            shards = self._shards(mp.stream_arn)
            ids = {s["ShardId"] for s in shards}
            for s in shards:
                key = (mp.uuid, s["ShardId"])
                if key in self.threads:
                    continue
                # After resharding a child starts only when its parents are drained.
                parents = [
                    p for p in (s.get("ParentShardId"), s.get("AdjacentParentShardId")) if p and p in ids
                ]
                if any((mp.uuid, p) not in self.finished for p in parents):
                    continue
                t = threading.Thread(
                    target=self._poll_shard,
                    args=(mp, s["ShardId"]),
                    name=f"esm-{mp.function_name}-{s['ShardId']}",
                    daemon=True,
                )
                self.threads[key] = t
                t.start()

    def _supervise(self) -> None:
        while not self.stop_event.wait(1.0):
            try:
                self._schedule()
                self.write_stats()
            except Exception as exc:  # keep supervising through a transient stack error
                log.warning("supervisor: %s", exc)

    def stop(self) -> None:
        """Stop polling, wait for in-flight batches and stop the workers."""
        self.stop_event.set()
        for t in list(self.threads.values()):
            t.join(timeout=30)
        for rt in self.runtimes.values():
            rt.close()
        self.write_stats()

    def drained(self) -> bool:
        """True when every enabled mapping has read its shards to the end and has nothing pending."""
        for mp in self.mappings:
            if not mp.enabled:
                continue
            st = self.stats[mp.uuid]
            keys = [k for k in self.threads if k[0] == mp.uuid]
            if not keys or not all(st.caught_up.get(k[1]) for k in keys):
                return False
        return True

    def run_until_drained(self, timeout: float = 300.0, settle: float = 0.5) -> bool:
        """Start (if needed) and wait until drained; True on success within ``timeout``."""
        if not self.threads:
            self.start()
        deadline = time.monotonic() + timeout
        for mp in self.mappings:
            self.stats[mp.uuid].caught_up.clear()
        while time.monotonic() < deadline:
            if self.drained():
                time.sleep(settle)
                if self.drained():
                    self.write_stats()
                    return True
            time.sleep(0.1)
        return False

    def write_stats(self) -> None:
        """Write the mappings' counters to ``<state>/esm/stats.json``."""
        out = {}
        for mp in self.mappings:
            st = self.stats[mp.uuid]
            rt = self.runtimes.get(mp.function_name)
            st.cold_starts = rt.cold_starts if rt else 0
            out[mp.uuid] = {
                "function": mp.function_name,
                **{k: getattr(st, k) for k in MappingStats.__slots__},
            }
        path = self.state_dir / "esm" / "stats.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=1, sort_keys=True))
        tmp.replace(path)

    # -- one shard ------------------------------------------------------------------------
    def _iterator(self, mp: Mapping, shard_id: str) -> str:
        done = self.positions.load(mp.uuid).get(shard_id)
        # By name: moto's iterators lose the stream when asked by ARN.
        kwargs: dict[str, Any] = {"StreamName": mp.stream_arn.split("/", 1)[1], "ShardId": shard_id}
        if done:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=done)
        elif mp.starting_position == "AT_TIMESTAMP" and mp.starting_timestamp:
            kwargs.update(ShardIteratorType="AT_TIMESTAMP", Timestamp=mp.starting_timestamp)
        else:
            kwargs["ShardIteratorType"] = mp.starting_position
        return str(self.kinesis.get_shard_iterator(**kwargs)["ShardIterator"])

    def _poll_shard(self, mp: Mapping, shard_id: str) -> None:
        while not self.stop_event.is_set():
            try:
                self._poll_shard_once(mp, shard_id)
                return
            except Exception as exc:  # the stack may be restarting: back off, resume from saved
                log.warning(
                    json.dumps(
                        {
                            "msg": "poller error",
                            "function": mp.function_name,
                            "shard": shard_id,
                            "error": repr(exc),
                        }
                    )
                )
                self.stop_event.wait(1.0)

    def _read_interval(self, mp: Mapping) -> float:
        """Least time between two reads of one shard by one mapping while records flow: the
        shard's 5 reads/s shared evenly by the enabled mappings of its stream."""
        readers = sum(1 for m in self.mappings if m.enabled and m.stream_arn == mp.stream_arn)
        return max(1, readers) / SHARD_READS_PER_SECOND

    def _poll_shard_once(self, mp: Mapping, shard_id: str) -> None:
        st = self.stats[mp.uuid]
        iterator: str | None = self._iterator(mp, shard_id)
        pending: list[dict[str, Any]] = []
        window_started: float | None = None
        last_read = 0.0
        backoff = 0.0
        while not self.stop_event.is_set():
            got = 0
            if iterator and len(pending) < mp.batch_size:
                gap = self._read_interval(mp) - (time.monotonic() - last_read)
                if gap > 0 and self.stop_event.wait(gap):
                    return
                last_read = time.monotonic()
                try:
                    resp = self.kinesis.get_records(
                        ShardIterator=iterator, Limit=min(10_000, mp.batch_size - len(pending))
                    )
                except ClientError as exc:
                    code = exc.response["Error"]["Code"]
                    if code == "ExpiredIteratorException":
                        iterator = self._iterator(mp, shard_id)
                        pending.clear()
                        continue
                    if code == "ProvisionedThroughputExceededException":
                        # Others read this shard too: back off (with jitter so they spread out).
                        backoff = min(2.0, backoff * 2 or 0.25)
                        self.stop_event.wait(backoff * (0.5 + random.random()))
                        continue
                    raise
                backoff = 0.0
                got = len(resp["Records"])
                pending.extend(resp["Records"])
                iterator = resp.get("NextShardIterator")
                if got and window_started is None:
                    window_started = time.monotonic()
            if pending:
                window_open = (
                    window_started is not None
                    and mp.window > 0
                    and time.monotonic() - window_started < mp.window
                )
                full = len(pending) >= mp.batch_size or _payload(pending) >= PAYLOAD_CAP
                if full or not window_open or iterator is None:
                    batch = _take(pending, mp.batch_size)
                    st.caught_up[shard_id] = False
                    self._deliver(mp, shard_id, batch)
                    del pending[: len(batch)]
                    window_started = time.monotonic() if pending else None
                    continue
            if iterator is None and not pending:
                self.finished.add((mp.uuid, shard_id))
                st.caught_up[shard_id] = True
                return
            if not got:
                if not pending:
                    st.caught_up[shard_id] = True
                self.stop_event.wait(IDLE_POLL_SECONDS if not pending else 0.05)

    def _deliver(self, mp: Mapping, shard_id: str, batch: list[dict[str, Any]]) -> None:
        """Deliver ``batch`` until it succeeds or is discarded; then persist the position."""
        queue: list[list[dict[str, Any]]] = [batch]
        st = self.stats[mp.uuid]
        while queue and not self.stop_event.is_set():
            records = queue.pop(0)
            attempts = 0
            while records:
                if self.stop_event.is_set():
                    return
                if mp.max_record_age >= 0 and _age(records[0]) > mp.max_record_age:
                    self._discard(mp, shard_id, records, "RecordAgeExceeded", attempts, None)
                    break
                result = self._invoke(mp, shard_id, records)
                attempts += 1
                st.batches += 1
                failed_at = self._failed_index(mp, records, result)
                if failed_at is None:
                    st.records += len(records)
                    st.last_result = "OK"
                    self.positions.save(mp.uuid, shard_id, records[-1]["SequenceNumber"])
                    break
                if failed_at > 0:
                    # Records before the lowest reported sequence number succeeded.
                    st.records += failed_at
                    self.positions.save(mp.uuid, shard_id, records[failed_at - 1]["SequenceNumber"])
                    records = records[failed_at:]
                    st.partial_failures += 1
                else:
                    st.function_errors += 0 if result.ok else 1
                    if result.ok:
                        st.partial_failures += 1
                st.last_result = "PROBLEM: " + ((result.error or {}).get("errorType", "partial failure"))
                if mp.max_retries >= 0 and attempts > mp.max_retries:
                    err = (result.error or {}).get("errorType")
                    self._discard(mp, shard_id, records, "RetryAttemptsExhausted", attempts, err)
                    break
                if mp.bisect and not result.ok and len(records) > 1:
                    half = len(records) // 2
                    st.bisections += 1
                    queue[:0] = [records[:half], records[half:]]
                    break
                st.retries += 1
                self.stop_event.wait(min(1.0, 0.05 * attempts))

    def _failed_index(self, mp: Mapping, records: list[dict[str, Any]], result: Invocation) -> int | None:
        """None for success, else the index of the first record to redeliver."""
        if not result.ok:
            return 0
        if not mp.report_item_failures:
            return None
        payload = result.payload
        if payload is None:
            return None
        if not isinstance(payload, dict):
            return 0
        failures = payload.get("batchItemFailures")
        if failures is None or failures == []:
            return None
        if not isinstance(failures, list):
            return 0
        index = {r["SequenceNumber"]: i for i, r in enumerate(records)}
        found = []
        for f in failures:
            ident = f.get("itemIdentifier") if isinstance(f, dict) else None
            if not ident or ident not in index:
                return 0  # an invalid identifier fails the whole batch
            found.append(index[ident])
        return min(found)

    def _invoke(self, mp: Mapping, shard_id: str, records: list[dict[str, Any]]) -> Invocation:
        region = mp.stream_arn.split(":")[3]
        event = {
            "Records": [
                lambda_record(r, shard_id, mp.stream_arn, region, self._roles.get(mp.function_name, ""))
                for r in records
            ]
        }
        result = self.runtimes[mp.function_name].invoke(event)
        log.info(
            json.dumps(
                {
                    "msg": "invoke",
                    "function": mp.function_name,
                    "shard": shard_id,
                    "records": len(records),
                    "ok": result.ok,
                    "cold": result.cold,
                    "ms": round(result.duration_ms, 1),
                    "error": (result.error or {}).get("errorType"),
                }
            )
        )
        return result

    def _discard(
        self,
        mp: Mapping,
        shard_id: str,
        records: list[dict[str, Any]],
        condition: str,
        attempts: int,
        error_type: str | None,
    ) -> None:
        st = self.stats[mp.uuid]
        st.discarded_batches += 1
        if mp.on_failure_arn and ":sqs:" in mp.on_failure_arn:
            name = mp.on_failure_arn.rsplit(":", 1)[1]
            url = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
            self.sqs.send_message(
                QueueUrl=url,
                MessageBody=failure_message(
                    records, shard_id, mp.stream_arn, mp.function_arn, condition, attempts, error_type
                ),
            )
        self.positions.save(mp.uuid, shard_id, records[-1]["SequenceNumber"])


def _payload(records: Sequence[dict[str, Any]]) -> int:
    return sum(record_size(r) for r in records)


def _take(pending: list[dict[str, Any]], batch_size: int) -> list[dict[str, Any]]:
    batch = []
    size = 0
    for r in pending[:batch_size]:
        n = record_size(r)
        if batch and size + n > PAYLOAD_CAP:
            break
        batch.append(r)
        size += n
    return batch


def _age(record: dict[str, Any]) -> float:
    ts = record.get("ApproximateArrivalTimestamp")
    if isinstance(ts, datetime):
        return (datetime.now(tz=UTC) - ts).total_seconds()
    return 0.0
