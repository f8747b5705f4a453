"""The local event source mapping: polls every shard, batches records into Lambda events of the
AWS shape, invokes the function and applies the mapping's settings as AWS documents them (batch
size, batching window, 6 MB payload cap, starting position, retries, record age, bisect, partial
batch responses, on-failure destination, parallelization factor, tumbling windows, enabled state,
parents before children). Its settings come from the stack's Lambda API, so whatever created the
mappings (the bootstrap or Terraform) drives it.

>>> runner = EsmRunner(settings)                       # doctest: +SKIP
>>> runner.run_until_drained(timeout=60)               # doctest: +SKIP
True
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from pipeline import aws
from pipeline.esm.events import data_bytes, failure_message, lambda_record, record_size, window_event
from pipeline.esm.runtime import FunctionRuntime, FunctionSpec, Invocation
from pipeline.settings import Settings

log = logging.getLogger("pipeline.esm")

PAYLOAD_CAP = 6 * 1024 * 1024
# AWS's ESM polls an idle shard once per second per mapping.
IDLE_POLL_SECONDS = 1.0
# Kinesis allows 5 GetRecords per second per shard, shared by every reader of the shard.
SHARD_READS_PER_SECOND = 5.0
# Records read ahead of delivery per shard and mapping; beyond this the reader waits for the lanes.
# It also waits once the records read and not yet done hold a full 6 MB batch per lane and one
# more: that keeps every lane busy and the runner's memory flat however far the consumers fall
# behind (one read adds at most 10 MB past the bound).
READ_AHEAD = 10_000
READ_BYTES = 2 * 1024 * 1024
# The tumbling-window state Lambda keeps per shard; larger ends the window early.
WINDOW_STATE_CAP = 1024 * 1024
# A function tag naming how many environments to initialise before the first event (moto's Lambda
# API has no provisioned-concurrency calls; in AWS, ``aws_lambda_provisioned_concurrency_config``).
PROVISIONED_TAG = "pipeline:provisioned-concurrency"


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
    tumbling_window: int = 0
    enabled: bool = True

    @classmethod
    def from_api(cls, m: dict[str, Any]) -> Mapping:
        """Build from a ``list_event_source_mappings`` element."""
        dest = (m.get("DestinationConfig") or {}).get("OnFailure", {}).get("Destination")
        ts = m.get("StartingPositionTimestamp")
        if ts is not None and not isinstance(ts, datetime):
            ts = datetime.fromtimestamp(float(ts), tz=UTC)
        return cls(
            uuid=m["UUID"],
            function_arn=m["FunctionArn"],
            function_name=m["FunctionArn"].split(":function:")[1].split(":")[0],
            stream_arn=m["EventSourceArn"],
            batch_size=min(10_000, int(m.get("BatchSize") or 100)),
            window=float(m.get("MaximumBatchingWindowInSeconds") or 0),
            starting_position=m.get("StartingPosition") or "TRIM_HORIZON",
            starting_timestamp=ts,
            max_retries=_int_or(m.get("MaximumRetryAttempts"), -1),
            max_record_age=_int_or(m.get("MaximumRecordAgeInSeconds"), -1),
            bisect=bool(m.get("BisectBatchOnFunctionError")),
            report_item_failures="ReportBatchItemFailures" in (m.get("FunctionResponseTypes") or []),
            on_failure_arn=dest or None,
            parallelization=max(1, min(10, int(m.get("ParallelizationFactor") or 1))),
            tumbling_window=int(m.get("TumblingWindowInSeconds") or 0),
            enabled=m.get("State", "Enabled") in ("Enabled", "Enabling", "Updating"),
        )


def _int_or(value: Any, default: int) -> int:
    return default if value is None else int(value)


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
    discarded_records: int = 0
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
            if p.name != "stats.json":
                p.unlink()


class EsmRunner:
    """Runs every mapping of the stack's Lambda API against the stack's Kinesis."""

    def __init__(
        self,
        settings: Settings,
        state_dir: Path | None = None,
        function_names: Sequence[str] | None = None,
        run_disabled: bool = False,
    ) -> None:
        self.settings = settings
        # On LocalStack the mappings are created disabled so that its own poller stays idle;
        # this runner then runs them regardless of their state.
        self.run_disabled = run_disabled
        self.state_dir = state_dir or settings.state_dir
        # GetRecords' data stays the base64 text Kinesis sent: it goes into Lambda events as
        # base64, so decoding and encoding it again was a quarter of the runner's CPU.
        self.kinesis = aws.client("kinesis", settings, raw_blobs=True)
        self.lam = aws.client("lambda", settings)
        self._sqs: Any = None
        self.positions = PositionStore(self.state_dir / "esm")
        self.log_dir = self.state_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.mappings: list[Mapping] = []
        self.runtimes: dict[str, FunctionRuntime] = {}
        self.stats: dict[str, MappingStats] = {}
        self.threads: dict[tuple[str, str], threading.Thread] = {}
        self.shards: dict[tuple[str, str], ShardConsumer] = {}
        self.finished: set[tuple[str, str]] = set()
        self.stop_event = threading.Event()
        self.only = set(function_names) if function_names else None
        self._roles: dict[str, str] = {}
        self._lock = threading.Lock()
        self._schedule_lock = threading.Lock()
        self.drain_since = 0.0
        # Bytes read ahead per shard and mapping before the reader waits; None: a 6 MB batch per
        # lane and one more (see READ_AHEAD).
        self.read_ahead_bytes: int | None = None

    @property
    def sqs(self) -> Any:
        """The SQS client for on-failure destinations, made on first use."""
        if self._sqs is None:
            self._sqs = aws.client("sqs", self.settings)
        return self._sqs

    # -- set-up ---------------------------------------------------------------------------
    def load_mappings(self) -> list[Mapping]:
        """Read the mappings and their functions' configuration from the Lambda API; start the
        functions' provisioned environments."""
        mappings = self._read_mappings()
        self.mappings = mappings
        for mp in mappings:
            if mp.function_name not in self.runtimes:
                self.runtimes[mp.function_name] = self._runtime(mp)
            self.stats.setdefault(mp.uuid, MappingStats())
        return mappings

    def _read_mappings(self) -> list[Mapping]:
        mappings = []
        paginator = self.lam.get_paginator("list_event_source_mappings")
        for page in paginator.paginate():
            for m in page["EventSourceMappings"]:
                if ":kinesis:" not in m["EventSourceArn"]:
                    continue
                mapping = Mapping.from_api(m)
                if self.run_disabled:
                    mapping.enabled = True
                if self.only and mapping.function_name not in self.only:
                    continue
                mappings.append(mapping)
        return mappings

    def _runtime(self, mp: Mapping) -> FunctionRuntime:
        config = self.lam.get_function_configuration(FunctionName=mp.function_name)
        self._roles[mp.function_name] = config.get("Role", "")
        spec = FunctionSpec.from_config(config, self.log_dir)
        # What Lambda's runtime adds to the function's own variables (region, credentials of
        # the execution role), plus the stack's endpoint.
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
        try:
            tags = self.lam.list_tags(Resource=config["FunctionArn"]).get("Tags", {})
        except ClientError:
            tags = {}
        provisioned = int(tags.get(PROVISIONED_TAG, 0) or 0)
        return FunctionRuntime(
            spec, concurrency=max(1, shards * mp.parallelization, provisioned), provisioned=provisioned
        )

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
        """Start a consumer for every ready shard of every enabled mapping."""
        if not self.mappings:
            self.load_mappings()
        self.schedule()
        threading.Thread(target=self._supervise, name="esm-supervisor", daemon=True).start()

    def schedule(self) -> None:
        """Start consumers for shards that are ready (children once their parents are drained)."""
        with self._schedule_lock:
            self._schedule()

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
                consumer = ShardConsumer(self, mp, s["ShardId"], is_child=bool(parents))
                t = threading.Thread(
                    target=consumer.run, name=f"esm-{mp.function_name}-{s['ShardId']}", daemon=True
                )
                self.shards[key] = consumer
                self.threads[key] = t
                t.start()

    def _refresh(self) -> None:
        """Follow Enabled/disabled changes made through the Lambda API while running."""
        current = {m.uuid: m for m in self._read_mappings()}
        for mp in self.mappings:
            now = current.get(mp.uuid)
            if now is not None and now.enabled != mp.enabled:
                log.info(json.dumps({"msg": "mapping state", "uuid": mp.uuid, "enabled": now.enabled}))
                mp.enabled = now.enabled

    def _supervise(self) -> None:
        while not self.stop_event.wait(1.0):
            try:
                self._refresh()
                self.schedule()
                self.write_stats()
            except Exception as exc:  # keep supervising through a transient stack error
                log.warning("supervisor: %s", exc)

    def stop(self) -> None:
        """Stop polling, wait for in-flight batches and stop the workers."""
        self.stop_event.set()
        for c in list(self.shards.values()):
            c.wake()
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
        self.drain_since = time.monotonic()
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
        with self._lock:
            for mp in self.mappings:
                st = self.stats[mp.uuid]
                rt = self.runtimes.get(mp.function_name)
                st.cold_starts = rt.cold_starts if rt else 0
                st.positions = self.positions.load(mp.uuid)
                out[mp.uuid] = {
                    "function": mp.function_name,
                    "enabled": mp.enabled,
                    **{k: getattr(st, k) for k in MappingStats.__slots__},
                }
            path = self.state_dir / "esm" / "stats.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(out, indent=1, sort_keys=True, default=str))
            tmp.replace(path)

    # -- delivery -------------------------------------------------------------------------
    def deliver(
        self,
        mp: Mapping,
        shard_id: str,
        batch: list[dict[str, Any]],
        done: Callable[[list[dict[str, Any]]], None],
        extra: dict[str, Any] | None = None,
    ) -> Invocation | None:
        """Deliver ``batch`` until every record succeeded or was discarded, calling ``done`` with
        each finished run of records in order. Returns the last successful invocation."""
        queue: list[list[dict[str, Any]]] = [batch]
        st = self.stats[mp.uuid]
        last_ok: Invocation | None = None
        while queue and not self.stop_event.is_set():
            records = queue.pop(0)
            attempts = 0
            last_error: str | None = None
            while records:
                if self.stop_event.is_set():
                    return last_ok
                if mp.max_record_age >= 0 and _age(records[0]) > mp.max_record_age:
                    # Records past the maximum age are not sent to the function again.
                    old = [r for r in records if _age(r) > mp.max_record_age]
                    self._discard(mp, shard_id, old, "RecordAgeExceeded", attempts, last_error)
                    done(old)
                    records = records[len(old) :]
                    continue
                result = self._invoke(mp, shard_id, records, extra)
                attempts += 1
                last_error = None if result.ok else str((result.error or {}).get("errorType", "Unhandled"))
                st.batches += 1
                failed_at = self._failed_index(mp, records, result)
                if failed_at is None:
                    st.records += len(records)
                    st.last_result = "OK"
                    last_ok = result
                    done(records)
                    break
                if result.ok:
                    last_ok = result
                    st.partial_failures += 1
                    if failed_at > 0:
                        # Lambda checkpoints before the lowest reported sequence number.
                        st.records += failed_at
                        done(records[:failed_at])
                        records = records[failed_at:]
                    st.last_result = "PROBLEM: partial batch failure"
                else:
                    st.function_errors += 1
                    st.last_result = "PROBLEM: " + str((result.error or {}).get("errorType", "error"))
                if mp.bisect and not result.ok and len(records) > 1:
                    # Splitting a batch does not count towards the retry quota.
                    half = len(records) // 2
                    st.bisections += 1
                    queue[:0] = [records[:half], records[half:]]
                    break
                if mp.max_retries >= 0 and attempts > mp.max_retries:
                    err = (result.error or {}).get("errorType") if not result.ok else None
                    self._discard(mp, shard_id, records, "RetryAttemptsExhausted", attempts, err)
                    done(records)
                    break
                st.retries += 1
                self.stop_event.wait(min(1.0, 0.05 * attempts))
        return last_ok

    def _failed_index(self, mp: Mapping, records: list[dict[str, Any]], result: Invocation) -> int | None:
        """None for success, else the index of the first record to redeliver."""
        if not result.ok:
            return 0
        payload = result.payload
        if mp.tumbling_window and not (isinstance(payload, dict) and "state" in payload):
            return 0  # with tumbling windows a response without state is a failed invocation
        if not mp.report_item_failures:
            return None
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
            if not isinstance(ident, str) or ident not in index:
                return 0  # a missing, empty or unknown identifier fails the whole batch
            found.append(index[ident])
        return min(found)

    def _invoke(
        self, mp: Mapping, shard_id: str, records: list[dict[str, Any]], extra: dict[str, Any] | None
    ) -> Invocation:
        region = mp.stream_arn.split(":")[3]
        event: dict[str, Any] = {
            "Records": [
                lambda_record(r, shard_id, mp.stream_arn, region, self._roles.get(mp.function_name, ""))
                for r in records
            ]
        }
        if extra:
            event.update(extra)
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
        st.discarded_records += len(records)
        log.warning(
            json.dumps(
                {
                    "msg": "discarded",
                    "function": mp.function_name,
                    "shard": shard_id,
                    "records": len(records),
                    "condition": condition,
                }
            )
        )
        if mp.on_failure_arn and ":sqs:" in mp.on_failure_arn:
            name = mp.on_failure_arn.rsplit(":", 1)[1]
            url = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
            self.sqs.send_message(
                QueueUrl=url,
                MessageBody=failure_message(
                    records, shard_id, mp.stream_arn, mp.function_arn, condition, attempts, error_type
                ),
            )


class ShardConsumer:
    """One mapping's reader of one shard, feeding ``ParallelizationFactor`` lanes.

    Records go to a lane by partition key, so each key keeps its order while up to N batches of
    the shard run at once. The saved position only moves past records that are done, so a
    restart resumes at the oldest record still in flight.
    """

    def __init__(self, runner: EsmRunner, mp: Mapping, shard_id: str, is_child: bool = False) -> None:
        self.runner = runner
        self.mp = mp
        self.shard_id = shard_id
        self.is_child = is_child
        # Tumbling windows keep state per shard, so they run in one lane.
        n = 1 if mp.tumbling_window else mp.parallelization
        self.cond = threading.Condition()
        self.lanes: list[deque[dict[str, Any]]] = [deque() for _ in range(n)]
        self.busy = [False] * n
        self.outstanding: deque[str] = deque()
        self.read_set: dict[str, int] = {}  # sequence number -> data bytes, of the current read
        self.outstanding_bytes = 0
        self.completed: set[str] = set()
        self.ended = False  # the shard is closed and read to its end
        self.window_open = False  # a tumbling window still awaits its final invocation
        self.empty_read_at: float | None = None  # when the last read, which found nothing, began
        self.lane_threads: list[threading.Thread] = []

    @property
    def stop_event(self) -> threading.Event:
        return self.runner.stop_event

    def wake(self) -> None:
        """Wake every thread waiting on this shard."""
        with self.cond:
            self.cond.notify_all()

    # -- reading --------------------------------------------------------------------------
    def _iterator(self) -> str:
        mp = self.mp
        done = self.runner.positions.load(mp.uuid).get(self.shard_id)
        # By name: moto's iterators lose the stream when asked by ARN.
        kwargs: dict[str, Any] = {"StreamName": mp.stream_arn.split("/", 1)[1], "ShardId": self.shard_id}
        if done:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=done)
        elif self.is_child:
            # A child of a drained parent is read from its start, whatever the starting position.
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        elif mp.starting_position == "AT_TIMESTAMP":
            if mp.starting_timestamp is None:
                raise ValueError(f"mapping {mp.uuid}: AT_TIMESTAMP needs a StartingPositionTimestamp")
            kwargs.update(ShardIteratorType="AT_TIMESTAMP", Timestamp=mp.starting_timestamp)
        else:
            kwargs["ShardIteratorType"] = mp.starting_position
        return str(self.runner.kinesis.get_shard_iterator(**kwargs)["ShardIterator"])

    def _read_interval(self) -> float:
        """Least time between two reads while records flow: the shard's 5 reads/s shared evenly
        by the enabled mappings of its stream."""
        readers = sum(1 for m in self.runner.mappings if m.enabled and m.stream_arn == self.mp.stream_arn)
        return max(1, readers) / SHARD_READS_PER_SECOND

    def run(self) -> None:
        """Read the shard until stopped or, for a closed shard, until every record is done."""
        for i in range(len(self.lanes)):
            t = threading.Thread(target=self._lane, args=(i,), name=f"{threading.current_thread().name}-{i}")
            t.daemon = True
            self.lane_threads.append(t)
            t.start()
        while not self.stop_event.is_set():
            try:
                self._read()
                break
            except Exception as exc:  # the stack may be restarting: back off, resume from saved
                log.warning(
                    json.dumps(
                        {
                            "msg": "poller error",
                            "function": self.mp.function_name,
                            "shard": self.shard_id,
                            "error": repr(exc),
                        }
                    )
                )
                with self.cond:
                    for lane in self.lanes:
                        lane.clear()
                    self.outstanding.clear()
                    self.read_set.clear()
                    self.outstanding_bytes = 0
                    self.completed.clear()
                self.stop_event.wait(1.0)
        self.wake()
        for t in self.lane_threads:
            t.join(timeout=30)

    def _idle(self) -> bool:
        return not any(self.lanes) and not any(self.busy) and not self.window_open

    def _caught_up(self) -> bool:
        """Nothing pending, and a read begun since the runner was last asked to drain found
        nothing new."""
        at = self.empty_read_at
        return at is not None and at >= self.runner.drain_since and self._idle()

    def _read(self) -> None:
        mp, st = self.mp, self.runner.stats[self.mp.uuid]
        iterator: str | None = self._iterator()
        last_read = 0.0
        backoff = 0.0
        avg_size = 0.0  # bytes per record read so far (a moving average)
        while not self.stop_event.is_set():
            if not mp.enabled:
                # A disabled mapping stops polling; in-flight batches finish.
                self.stop_event.wait(0.5)
                continue
            with self.cond:
                full = self.runner.read_ahead_bytes or (len(self.lanes) + 1) * PAYLOAD_CAP
                room = full - self.outstanding_bytes
                if len(self.outstanding) >= READ_AHEAD or room <= 0:
                    self.cond.wait(0.1)
                    continue
            # As many records as fit the room, and at most READ_BYTES, at the size records have had
            # so far: one answer of up to 10 MB would overshoot the bound and, parsed and decoded by
            # botocore, cost several times its size in memory at once. A shard gives out 2 MiB/s,
            # so smaller reads cost no throughput.
            limit = max(1, min(10_000, int(min(room, READ_BYTES) / avg_size))) if avg_size else 10_000
            if iterator is None:
                # A closed shard read to its end: deliver what is left, close any open window,
                # then let the children start.
                with self.cond:
                    while (any(self.lanes) or any(self.busy)) and not self.stop_event.is_set():
                        self.cond.wait(0.5)
                    self.ended = True
                    self.cond.notify_all()
                    while self.window_open and not self.stop_event.is_set():
                        self.cond.wait(0.5)
                if self.stop_event.is_set():
                    return
                self.runner.finished.add((mp.uuid, self.shard_id))
                # Start the children now, so the runner is never seen drained between the two.
                self.runner.schedule()
                st.caught_up[self.shard_id] = True
                return
            gap = self._read_interval() - (time.monotonic() - last_read)
            if gap > 0 and self.stop_event.wait(gap):
                return
            last_read = time.monotonic()
            try:
                resp = self.runner.kinesis.get_records(ShardIterator=iterator, Limit=limit)
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                if code == "ExpiredIteratorException":
                    raise  # restart from the saved position
                if code == "ProvisionedThroughputExceededException":
                    # Others read this shard too: back off (with jitter so they spread out).
                    backoff = min(2.0, backoff * 2 or 0.25)
                    self.stop_event.wait(backoff * (0.5 + random.random()))
                    continue
                raise
            backoff = 0.0
            records = resp["Records"]
            iterator = resp.get("NextShardIterator")
            if records:
                sizes = [data_bytes(r) for r in records]
                mean = sum(sizes) / len(sizes)
                avg_size = mean if not avg_size else 0.5 * avg_size + 0.5 * mean
                st.caught_up[self.shard_id] = False
                with self.cond:
                    self.empty_read_at = None
                    for r, size in zip(records, sizes, strict=True):
                        self.outstanding.append(r["SequenceNumber"])
                        self.read_set[r["SequenceNumber"]] = size
                        self.lanes[self._lane_of(r)].append(r)
                    self.outstanding_bytes += sum(sizes)
                    self.cond.notify_all()
                continue
            if iterator is None:
                continue
            with self.cond:
                self.empty_read_at = last_read
                if self._caught_up():
                    st.caught_up[self.shard_id] = True
            self.stop_event.wait(IDLE_POLL_SECONDS)

    def _lane_of(self, record: dict[str, Any]) -> int:
        n = len(self.lanes)
        if n == 1:
            return 0
        return int(hashlib.md5(record["PartitionKey"].encode("utf-8")).hexdigest(), 16) % n

    # -- completion -----------------------------------------------------------------------
    def complete(self, records: list[dict[str, Any]]) -> None:
        """Mark records done and persist the position past every done record in shard order."""
        if not records:
            return
        saved = None
        with self.cond:
            # Only records of the current read count: a batch finishing after the reader restarted
            # must not move the position past records read again.
            self.completed.update(
                r["SequenceNumber"] for r in records if r["SequenceNumber"] in self.read_set
            )
            while self.outstanding and self.outstanding[0] in self.completed:
                saved = self.outstanding.popleft()
                self.completed.discard(saved)
                self.outstanding_bytes -= self.read_set.pop(saved, 0)
            self.cond.notify_all()
        if saved is not None:
            self.runner.positions.save(self.mp.uuid, self.shard_id, saved)

    # -- one lane -------------------------------------------------------------------------
    def _take(self, i: int, last_done: float) -> list[dict[str, Any]] | None:
        """Wait for the next batch of lane ``i``: full, at the payload cap, or its window over."""
        mp, lane = self.mp, self.lanes[i]
        first_seen: float | None = None
        with self.cond:
            while not self.stop_event.is_set():
                if lane:
                    now = time.monotonic()
                    first_seen = first_seen or now
                    # The window runs from the end of the previous invocation (AWS), but never
                    # before the first record is there to wait for.
                    opened = max(first_seen, last_done)
                    full = len(lane) >= mp.batch_size or _payload(lane, mp.batch_size) >= PAYLOAD_CAP
                    if full or mp.window <= 0 or now - opened >= mp.window or self.ended:
                        batch = _take(lane, mp.batch_size)
                        if mp.tumbling_window:
                            start = _window_start(batch[0], mp.tumbling_window)
                            batch = [r for r in batch if _window_start(r, mp.tumbling_window) == start]
                            batch = _prefix(batch, lane)
                        for _ in batch:
                            lane.popleft()
                        self.busy[i] = True
                        return batch
                    self.cond.wait(min(0.1, mp.window - (now - opened)))
                    continue
                if self.ended:
                    return None
                if mp.tumbling_window:
                    return []  # let the lane check whether its window is over
                self.cond.wait(0.5)
        return None

    def _lane(self, i: int) -> None:
        mp = self.mp
        last_done = 0.0
        tw = _TumblingWindow(mp.tumbling_window) if mp.tumbling_window else None
        while not self.stop_event.is_set():
            batch = self._take(i, last_done)
            if batch is None:
                if tw is not None and tw.open:
                    self._final_invoke(tw)
                return
            try:
                while not self.stop_event.is_set():
                    try:
                        if tw is None:
                            self.runner.deliver(mp, self.shard_id, batch, self.complete)
                        else:
                            self._deliver_windowed(tw, batch)
                        break
                    except Exception as exc:  # e.g. the stack restarting: keep the batch, try again
                        log.warning(
                            json.dumps(
                                {
                                    "msg": "delivery error",
                                    "function": mp.function_name,
                                    "shard": self.shard_id,
                                    "error": repr(exc),
                                }
                            )
                        )
                        self.stop_event.wait(1.0)
            finally:
                last_done = time.monotonic()
                with self.cond:
                    self.busy[i] = False
                    # Caught up as of the last read, which found nothing new.
                    if self._caught_up():
                        self.runner.stats[mp.uuid].caught_up[self.shard_id] = True
                    self.cond.notify_all()
            if not batch:
                self.stop_event.wait(0.2)

    # -- tumbling windows -----------------------------------------------------------------
    def _deliver_windowed(self, tw: _TumblingWindow, batch: list[dict[str, Any]]) -> None:
        if not batch:
            # No records: close the window once its end has passed and the shard was read past it.
            if tw.open and time.time() >= tw.end + IDLE_POLL_SECONDS:
                self._final_invoke(tw)
            return
        start = _window_start(batch[0], tw.seconds)
        if tw.open and start != tw.start:
            self._final_invoke(tw)
        if not tw.open:
            tw.begin(start)
            with self.cond:
                self.window_open = True
        result = self.runner.deliver(self.mp, self.shard_id, batch, self.complete, tw.extra(self, False))
        if result is not None and isinstance(result.payload, dict):
            tw.state = result.payload.get("state") or {}
            if len(json.dumps(tw.state)) > WINDOW_STATE_CAP:
                # State over 1 MB ends the window early; the next invoke starts it afresh.
                self._final_invoke(tw, early=True)
                tw.begin(start)
                with self.cond:
                    self.window_open = True

    def _final_invoke(self, tw: _TumblingWindow, early: bool = False) -> None:
        """Invoke with ``isFinalInvokeForWindow`` and the window's state, retrying until it works."""
        extra = tw.extra(self, True, early)
        while not self.stop_event.is_set():
            result = self.runner._invoke(self.mp, self.shard_id, [], extra)
            self.runner.stats[self.mp.uuid].batches += 1
            if result.ok:
                break
            # A failed final invocation pauses the shard until it succeeds (AWS).
            self.runner.stats[self.mp.uuid].function_errors += 1
            self.stop_event.wait(0.5)
        tw.open, tw.state = False, {}
        with self.cond:
            self.window_open = False
            self.cond.notify_all()


class _TumblingWindow:
    """The open window of one shard and its state."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self.start = 0.0
        self.state: dict[str, Any] = {}
        self.open = False

    @property
    def end(self) -> float:
        return self.start + self.seconds

    def begin(self, start: float) -> None:
        self.start, self.state, self.open = start, {}, True

    def extra(self, consumer: ShardConsumer, final: bool, early: bool = False) -> dict[str, Any]:
        return window_event(
            self.start, self.end, self.state, consumer.shard_id, consumer.mp.stream_arn, final, early
        )


def _payload(records: Sequence[dict[str, Any]], limit: int) -> int:
    total = 0
    for i, r in enumerate(records):
        if i >= limit:
            break
        total += record_size(r)
    return total


def _take(pending: deque[dict[str, Any]], batch_size: int) -> list[dict[str, Any]]:
    batch: list[dict[str, Any]] = []
    size = 0
    for r in pending:
        if len(batch) >= batch_size:
            break
        n = record_size(r)
        if batch and size + n > PAYLOAD_CAP:
            break
        batch.append(r)
        size += n
    return batch


def _prefix(selected: list[dict[str, Any]], lane: deque[dict[str, Any]]) -> list[dict[str, Any]]:
    """The leading run of ``lane`` that is in ``selected`` (a batch must be contiguous)."""
    out = []
    for r, s in zip(lane, selected, strict=False):
        if r is not s:
            break
        out.append(r)
    return out


def _arrival(record: dict[str, Any]) -> float:
    ts = record.get("ApproximateArrivalTimestamp")
    if isinstance(ts, datetime):
        return ts.timestamp()
    return float(ts or 0)


def _window_start(record: dict[str, Any], seconds: int) -> float:
    """Tumbling windows are aligned to multiples of their length, by arrival time."""
    return float(int(_arrival(record) // seconds) * seconds)


def _age(record: dict[str, Any]) -> float:
    ts = record.get("ApproximateArrivalTimestamp")
    if isinstance(ts, datetime):
        return (datetime.now(tz=UTC) - ts).total_seconds()
    return 0.0
