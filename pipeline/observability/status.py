"""``pipeline status [--watch]``: per shard, how far the stream, each ESM and each consumer are.

Per shard and consumer: the newest sequence number in the stream, the ESM's position (the local
runner's files; AWS does not expose it), the consumer's checkpoint, the lag in Kinesis records and
in time (age of the oldest record after the checkpoint) and the consumer's throughput. Then the
mappings (state, last result, counters), the on-failure queues' depth, the quarantine and the lake.

Everything comes from the AWS APIs through ``pipeline.aws.client``, so the view works against the
embedded stack and against AWS alike. Kinesis has no "newest sequence number" call: the view reads
the shard after the lowest checkpoint with at most ``MAX_READS`` GetRecords calls per shard and
refresh, so lag beyond that shows as a lower bound (``≥``). Those reads use the shard's read
quota (5 calls/s) like any consumer; ``--interval`` keeps them rare.

>>> print(render(collect(settings)))                                 # doctest: +SKIP
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TextIO, TypeVar
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError

from pipeline import aws
from pipeline.codecs.positions import decode_position
from pipeline.settings import Settings

MAX_READS = 2
READ_LIMIT = 10_000
MAX_LIST_PAGES = 100
CLEAR = "\x1b[H\x1b[2J"

T = TypeVar("T")


# -- the snapshot --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ConsumerShard:
    """One consumer on one shard."""

    consumer: str
    esm_position: str | None
    checkpoint: tuple[str, int] | None
    lag_records: int | None
    lag_is_lower_bound: bool
    lag_seconds: float | None
    records_total: int | None
    throughput: float | None


@dataclass(frozen=True, slots=True)
class ShardStatus:
    """One shard: its newest record and every consumer's progress on it."""

    shard_id: str
    is_open: bool
    newest: str | None
    newest_known: bool
    consumers: tuple[ConsumerShard, ...]


@dataclass(frozen=True, slots=True)
class MappingStatus:
    """One event source mapping: what the Lambda API says, plus the local runner's counters."""

    function: str
    uuid: str
    state: str
    last_result: str
    batch_size: int | None
    batches: int | None = None
    records: int | None = None
    errors: int | None = None
    discarded: int | None = None
    cold_starts: int | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one refresh of the view shows."""

    taken_at: float
    endpoint: str
    stream: str
    processes: dict[str, int | None]
    shards: tuple[ShardStatus, ...]
    mappings: tuple[MappingStatus, ...]
    queues: dict[str, int | None]
    quarantined: int | None
    lake_objects: int | None
    lake_bytes: int | None
    lake_is_lower_bound: bool
    problems: tuple[str, ...] = field(default_factory=tuple)

    def shard(self, shard_id: str) -> ShardStatus:
        """The row group of ``shard_id``."""
        return next(s for s in self.shards if s.shard_id == shard_id)


# -- collecting ----------------------------------------------------------------------------------
class Clients:
    """boto3 clients made once and reused by every refresh (making one costs ~0.5 s of CPU)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._made: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        """The client of ``service``."""
        if service not in self._made:
            self._made[service] = aws.client(service, self.settings)
        return self._made[service]


def is_local(settings: Settings) -> bool:
    """True when the settings point at a stack on this machine (pid and ESM files apply)."""
    host = urlparse(settings.endpoint_url or "").hostname or ""
    return host in ("127.0.0.1", "localhost", "::1")


def _guard(problems: list[str], label: str, fn: Callable[[], T], default: T) -> T:
    # A missing table or queue (half-deployed stack) shows as one line, not as a dead view.
    try:
        return fn()
    except ClientError as exc:
        err = exc.response.get("Error", {})
        problems.append(f"{label}: {err.get('Code')}: {err.get('Message')}")
        return default


def _shards(kinesis: Any, stream: str) -> list[dict[str, Any]]:
    shards: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"StreamName": stream}
    while True:
        resp = kinesis.list_shards(**kwargs)
        shards.extend(resp["Shards"])
        if not resp.get("NextToken"):
            return shards
        kwargs = {"NextToken": resp["NextToken"]}


def _checkpoints(clients: Clients) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    pages = clients("dynamodb").get_paginator("scan").paginate(TableName=clients.settings.checkpoint_table)
    for page in pages:
        for item in page["Items"]:
            out[item["pk"]["S"]] = {
                k: (int(v["N"]) if "N" in v else v.get("S")) for k, v in item.items() if k != "pk"
            }
    return out


@dataclass(slots=True)
class _Read:
    """Records read after ``start`` (None: from the trim horizon) on one shard."""

    start: int | None
    seqs: list[int] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    at_end: bool = False

    def covers(self, seq: int | None) -> bool:
        if self.start is not None and (seq is None or seq < self.start):
            return False
        return self.at_end or (bool(self.seqs) and self.seqs[-1] > (seq if seq is not None else -1))


def _read_after(kinesis: Any, stream: str, shard_id: str, start: int | None) -> _Read:
    kwargs: dict[str, Any] = {"StreamName": stream, "ShardId": shard_id}
    if start is None:
        kwargs["ShardIteratorType"] = "TRIM_HORIZON"
    else:
        kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=str(start))
    read = _Read(start)
    iterator = kinesis.get_shard_iterator(**kwargs)["ShardIterator"]
    for _ in range(MAX_READS):
        resp = kinesis.get_records(ShardIterator=iterator, Limit=READ_LIMIT)
        for r in resp["Records"]:
            read.seqs.append(int(r["SequenceNumber"]))
            ts = r.get("ApproximateArrivalTimestamp")
            read.arrivals.append(ts.timestamp() if isinstance(ts, datetime) else float(ts or 0))
        iterator = resp.get("NextShardIterator")
        # At the tip: fewer records than asked and nothing behind latest (AWS may answer an empty
        # page in the middle of a sparse shard, with MillisBehindLatest > 0).
        if iterator is None or (len(resp["Records"]) < READ_LIMIT and not resp.get("MillisBehindLatest")):
            read.at_end = True
            break
    return read


def _shard_status(
    kinesis: Any,
    settings: Settings,
    shard: dict[str, Any],
    consumers: Sequence[str],
    cps: dict[str, dict[str, Any]],
    esm_positions: dict[str, dict[str, str]],
    previous: Snapshot | None,
    elapsed: float | None,
    now: float,
) -> ShardStatus:
    sid = shard["ShardId"]
    points: dict[str, tuple[str, int] | None] = {}
    for c in consumers:
        pos = cps.get(f"{c}#{sid}", {}).get("position")
        points[c] = decode_position(pos) if pos else None
    reads: list[_Read] = []

    def read_for(seq: int | None) -> _Read:
        for r in reads:
            if r.covers(seq):
                return r
        r = _read_after(kinesis, settings.stream_name, sid, seq)
        reads.append(r)
        return r

    # Lowest checkpoint first: its read usually covers every other consumer of the shard too.
    seqs = {c: (int(p[0]) if p else None) for c, p in points.items()}
    rows: dict[str, ConsumerShard] = {}
    for c in sorted(consumers, key=lambda c: -1 if (n := seqs[c]) is None else n):
        seq = seqs[c]
        r = read_for(seq)
        after = [i for i, s in enumerate(r.seqs) if seq is None or s > seq]
        lag = len(after)
        lag_s = max(0.0, now - r.arrivals[after[0]]) if after else (0.0 if r.at_end else None)
        # No checkpoint item yet means nothing was consumed: a count of zero, so the first
        # refresh after consumption starts shows a rate.
        total = int(cps.get(f"{c}#{sid}", {}).get("records_in") or 0)
        rate = None
        if previous is not None and elapsed:
            before = next(
                (x for s in previous.shards if s.shard_id == sid for x in s.consumers if x.consumer == c),
                None,
            )
            if before is not None and before.records_total is not None:
                rate = max(0.0, (total - before.records_total) / elapsed)
        rows[c] = ConsumerShard(
            consumer=c,
            esm_position=esm_positions.get(c, {}).get(sid),
            checkpoint=points[c],
            lag_records=lag if (r.at_end or lag) else None,
            lag_is_lower_bound=not r.at_end,
            lag_seconds=lag_s,
            records_total=total,
            throughput=rate,
        )
    newest: str | None = None
    known = any(r.at_end for r in reads)
    seen = [s for r in reads for s in r.seqs]
    if seen:
        newest = str(max(seen))
    elif known:
        # Nothing after the checkpoints: the newest record is the one the highest checkpoint holds.
        marks = [int(p[0]) for p in points.values() if p]
        newest = str(max(marks)) if marks else None
    is_open = "EndingSequenceNumber" not in shard.get("SequenceNumberRange", {})
    return ShardStatus(sid, is_open, newest, known, tuple(rows[c] for c in consumers))


def _mappings(clients: Clients, stream_arn: str | None) -> list[dict[str, Any]]:
    out = []
    for page in clients("lambda").get_paginator("list_event_source_mappings").paginate():
        for m in page["EventSourceMappings"]:
            if stream_arn is None or m.get("EventSourceArn") == stream_arn:
                out.append(m)
    return out


def _function_of(arn: str) -> str:
    return arn.split(":function:", 1)[-1].split(":")[0]


def _consumer_of(settings: Settings, function: str) -> str:
    from pipeline.stack.bootstrap import CONSUMERS, function_name

    for c in CONSUMERS:
        if function_name(settings, c.name) == function:
            return c.name
    return function.removeprefix("pipeline-")


def _local_esm(state_dir: Path) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """The local runner's counters (by mapping uuid) and positions (by uuid, then shard)."""
    folder = state_dir / "esm"
    try:
        stats = dict(json.loads((folder / "stats.json").read_text()))
    except (FileNotFoundError, ValueError):
        stats = {}
    positions: dict[str, dict[str, str]] = {}
    for p in folder.glob("*.json") if folder.is_dir() else []:
        if p.name == "stats.json":
            continue
        try:
            positions[p.stem] = {str(k): str(v) for k, v in json.loads(p.read_text()).items()}
        except ValueError:
            continue
    for uuid, m in stats.items():
        positions.setdefault(uuid, dict(m.get("positions") or {}))
    return stats, positions


def _queue_depth(sqs: Any, name: str) -> int | None:
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as exc:
        if "NonExistentQueue" in exc.response.get("Error", {}).get("Code", ""):
            return None
        raise
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs.get("ApproximateNumberOfMessages", 0)) + int(
        attrs.get("ApproximateNumberOfMessagesNotVisible", 0)
    )


def _objects(clients: Clients, prefix: str) -> tuple[int, int, bool]:
    """Count and bytes of the objects under ``prefix/``, listing at most ``MAX_LIST_PAGES`` pages."""
    count = size = 0
    pages = 0
    listing = clients("s3").get_paginator("list_objects_v2")
    for page in listing.paginate(Bucket=clients.settings.bucket, Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            count += 1
            size += int(o.get("Size", 0))
        pages += 1
        if pages >= MAX_LIST_PAGES and page.get("IsTruncated"):
            return count, size, True
    return count, size, False


def collect(settings: Settings, previous: Snapshot | None = None, clients: Clients | None = None) -> Snapshot:
    """One snapshot of the pipeline; ``previous`` (the last refresh) gives the throughput."""
    from pipeline.stack import processes as procs
    from pipeline.stack.bootstrap import CONSUMERS

    now = time.time()
    problems: list[str] = []
    local = is_local(settings)
    processes: dict[str, int | None] = {}
    if local:
        processes = {name: procs.running_pid(settings.state_dir, name) for name in ("server", "esm")}

    clients = clients or Clients(settings)
    kinesis = clients("kinesis")
    summary = kinesis.describe_stream_summary(StreamName=settings.stream_name)["StreamDescriptionSummary"]
    shards = _shards(kinesis, settings.stream_name)
    cps: dict[str, dict[str, Any]] = _guard(problems, "checkpoints", lambda: _checkpoints(clients), {})
    consumers = [c.name for c in CONSUMERS]
    consumers += sorted({k.split("#", 1)[0] for k in cps} - set(consumers))

    arn = summary.get("StreamARN")
    api_mappings: list[dict[str, Any]] = _guard(problems, "mappings", lambda: _mappings(clients, arn), [])
    stats, positions = _local_esm(settings.state_dir) if local else ({}, {})
    esm_positions: dict[str, dict[str, str]] = {}
    mappings = []
    for m in api_mappings:
        function = _function_of(m["FunctionArn"])
        st = stats.get(m["UUID"]) or {}
        esm_positions[_consumer_of(settings, function)] = positions.get(m["UUID"], {})
        mappings.append(
            MappingStatus(
                function=function,
                uuid=m["UUID"],
                state=str(m.get("State", "-")),
                # AWS reports the last outcome itself; the local runner keeps its own.
                last_result=str(st.get("last_result") or m.get("LastProcessingResult") or "-"),
                batch_size=m.get("BatchSize"),
                batches=st.get("batches"),
                records=st.get("records"),
                errors=st.get("function_errors"),
                discarded=st.get("discarded_batches"),
                cold_starts=st.get("cold_starts"),
            )
        )

    elapsed = (now - previous.taken_at) if previous is not None else None
    rows = []
    for s in shards:
        try:
            rows.append(
                _shard_status(kinesis, settings, s, consumers, cps, esm_positions, previous, elapsed, now)
            )
        except ClientError as exc:
            # A throttled or expired read costs this refresh one shard's lag, not the whole view.
            problems.append(f"{s['ShardId']}: {exc.response.get('Error', {}).get('Code')}")
            rows.append(
                ShardStatus(
                    s["ShardId"],
                    True,
                    None,
                    False,
                    tuple(ConsumerShard(c, None, None, None, True, None, None, None) for c in consumers),
                )
            )

    sqs = clients("sqs")
    queues: dict[str, int | None] = {}
    for c in consumers:
        name = f"{settings.dlq_prefix}-{c}"
        queues[name] = _guard(problems, f"queue {name}", partial(_queue_depth, sqs, name), None)
    quarantined: int | None = _guard(
        problems, "quarantine", lambda: _objects(clients, settings.quarantine_prefix)[0], None
    )
    nothing: tuple[int | None, int | None, bool] = (None, None, False)
    lake = _guard(problems, "lake", lambda: _objects(clients, settings.lake_prefix), nothing)
    return Snapshot(
        taken_at=now,
        endpoint=settings.endpoint_url or f"AWS {settings.region}",
        stream=settings.stream_name,
        processes=processes,
        shards=tuple(rows),
        mappings=tuple(mappings),
        queues=queues,
        quarantined=quarantined,
        lake_objects=lake[0],
        lake_bytes=lake[1],
        lake_is_lower_bound=lake[2],
        problems=tuple(problems),
    )


# -- rendering -----------------------------------------------------------------------------------
def _seq(seq: str | None, width: int = 18) -> str:
    # AWS sequence numbers have 56 digits; the tail is what changes between records.
    if seq is None:
        return "-"
    return seq if len(seq) <= width else "…" + seq[-(width - 1) :]


def _num(n: float | None, lower_bound: bool = False) -> str:
    if n is None:
        return "?"
    return ("≥" if lower_bound else "") + f"{n:,.0f}"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _bytes(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r: Sequence[str]) -> str:
        cells = [f"{r[i]:>{w}}" if i in right else f"{r[i]:<{w}}" for i, w in enumerate(widths)]
        return "  ".join(cells).rstrip()

    return [line(header)] + [line(r) for r in rows]


def render(snap: Snapshot) -> str:
    """The snapshot as the terminal view (plain text, no colour codes)."""
    when = datetime.fromtimestamp(snap.taken_at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    out = [f"pipeline status · stream {snap.stream} ({len(snap.shards)} shards) · {snap.endpoint} · {when}"]
    for name, pid in snap.processes.items():
        out.append(f"{name:<8} {'running, pid ' + str(pid) if pid else 'not running'}")
    out.append("")
    header = [
        "shard",
        "newest seq",
        "consumer",
        "esm position",
        "checkpoint (seq/sub)",
        "lag records",
        "lag time",
        "records/s",
    ]
    rows = []
    for s in snap.shards:
        for i, c in enumerate(s.consumers):
            newest = _seq(s.newest) if s.newest_known else ("≥" + _seq(s.newest) if s.newest else "?")
            cp = f"{_seq(c.checkpoint[0])}/{c.checkpoint[1]}" if c.checkpoint else "-"
            rows.append(
                [
                    (s.shard_id + ("" if s.is_open else " (closed)")) if i == 0 else "",
                    newest if i == 0 else "",
                    c.consumer,
                    _seq(c.esm_position),
                    cp,
                    _num(c.lag_records, c.lag_is_lower_bound),
                    _age(c.lag_seconds),
                    "-" if c.throughput is None else f"{c.throughput:,.0f}",
                ]
            )
    out += _table(header, rows, right={5, 6, 7})
    if snap.mappings:
        out.append("")
        header = [
            "mapping",
            "state",
            "batch",
            "batches",
            "records",
            "errors",
            "discarded",
            "cold",
            "last result",
        ]
        mrows = [
            [
                m.function,
                m.state,
                "-" if m.batch_size is None else str(m.batch_size),
                *("-" if v is None else f"{v:,}" for v in (m.batches, m.records, m.errors, m.discarded)),
                "-" if m.cold_starts is None else str(m.cold_starts),
                m.last_result,
            ]
            for m in snap.mappings
        ]
        out += _table(header, mrows, right={2, 3, 4, 5, 6, 7})
    out.append("")
    for q, depth in snap.queues.items():
        out.append(f"on-failure queue {q}: {'missing' if depth is None else f'depth {depth:,}'}")
    out.append(f"quarantine: {_num(snap.quarantined)} records")
    bound = "≥" if snap.lake_is_lower_bound else ""
    out.append(f"lake: {bound}{_num(snap.lake_objects)} objects, {bound}{_bytes(snap.lake_bytes)}")
    for p in snap.problems:
        out.append(f"note: {p}")
    return "\n".join(out)


# -- the command ---------------------------------------------------------------------------------
def run(settings: Settings, watch: bool = False, interval: float = 2.0, out: TextIO | None = None) -> int:
    """Print the view once, or refresh it in place every ``interval`` seconds until Ctrl-C."""
    from pipeline.stack import processes as procs

    out = out or sys.stdout
    url = urlparse(settings.endpoint_url or "")
    if is_local(settings) and not watch and not procs.port_in_use(url.hostname or "", url.port or 80):
        for name in ("server", "esm"):
            pid = procs.running_pid(settings.state_dir, name)
            out.write(f"{name:<8} {'running, pid ' + str(pid) if pid else 'not running'}\n")
        out.write("the embedded stack is not running: `make up` starts it\n")
        return 0
    if not watch:
        out.write(render(collect(settings)) + "\n")
        return 0
    previous: Snapshot | None = None
    clients = Clients(settings)
    try:
        while True:
            try:
                snap = collect(settings, previous, clients)
                text = render(snap)
                previous = snap
            except (BotoCoreError, ClientError) as exc:
                # The stack may be restarting: keep watching rather than die mid-incident.
                text = f"cannot read the pipeline right now: {exc}"
            out.write(f"{CLEAR}{text}\n\nrefreshing every {interval:g} s · Ctrl-C to exit\n")
            out.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        out.write("\n")
        return 0
