"""Run reports: a markdown summary and PNG plots of one run, from the files the run left behind.

Sources, all under the state folder: the ESM runner's ``invoke`` lines (``logs/esm.log``), the
handlers' ``batch`` lines and EMF documents (``logs/<function>.log``), the producer's EMF documents
(``logs/producer.log``) and the runner's counters (``esm/stats.json``). Plots: throughput over
time, per-shard lag (iterator age) over time, and the batch latency histogram.

>>> run = load_run(Path(".state"), title="make up", produced=stats, elapsed=12.3)  # doctest: +SKIP
>>> write_report(Path("reports/20261127-001500"), run)                             # doctest: +SKIP
PosixPath('reports/20261127-001500/README.md')
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.observability.logs import read_lines
from pipeline.observability.metrics import NAMESPACE, EmfRecord, read_emf

PLOTS = {
    "throughput": "throughput.png",
    "lag": "lag.png",
    "latency": "latency.png",
}


@dataclass(frozen=True, slots=True)
class BatchPoint:
    """One handler batch: when it finished, for whom, and what it took."""

    ts: datetime | None
    consumer: str
    shard: str
    records: float
    ms: float | None
    iterator_age_ms: float | None = None
    failed: float = 0.0
    counters: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InvokePoint:
    """One invocation by the (local) ESM runner."""

    ts: datetime | None
    function: str
    shard: str
    records: int
    ok: bool
    cold: bool
    ms: float


@dataclass(slots=True)
class Run:
    """What one run left behind, read back."""

    title: str
    state_dir: Path | None
    batches: list[BatchPoint] = field(default_factory=list)
    invokes: list[InvokePoint] = field(default_factory=list)
    producer: list[EmfRecord] = field(default_factory=list)
    esm_stats: dict[str, Any] = field(default_factory=dict)
    produced: dict[str, Any] | None = None
    elapsed: float | None = None
    summary_rows: list[tuple[str, str]] = field(default_factory=list)


# -- reading -------------------------------------------------------------------------------------
def _ts(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _after(ts: datetime | None, since: datetime | None) -> bool:
    # Lines without a timestamp cannot be placed; they are kept rather than silently lost.
    return since is None or ts is None or ts >= since


def _batch_from_line(line: dict[str, Any]) -> BatchPoint:
    counters = {
        k: float(v) for k, v in line.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    age = line.get("iterator_age_ms")
    return BatchPoint(
        ts=_ts(line.get("ts")),
        consumer=str(line.get("consumer") or line.get("component") or "?"),
        shard=str(line.get("shard") or "?"),
        records=float(line.get("records_in", line.get("kinesis_records", 0)) or 0),
        ms=float(line["ms"]) if isinstance(line.get("ms"), int | float) else None,
        iterator_age_ms=float(age) if isinstance(age, int | float) else None,
        failed=float(line.get("failed", 0) or 0),
        counters=counters,
    )


def _batch_from_emf(rec: EmfRecord) -> BatchPoint:
    v = rec.values
    counters = {
        "records_in": v.get("RecordsIn", 0.0),
        "written": v.get("RecordsWritten", 0.0),
        "duplicates_delivery": v.get("DuplicatesDelivery", 0.0),
        "duplicates_event": v.get("DuplicatesEvent", 0.0),
        "quarantined": v.get("Quarantined", 0.0),
        "kinesis_records": v.get("KinesisRecords", 0.0),
    }
    return BatchPoint(
        ts=rec.timestamp,
        consumer=rec.dimensions.get("consumer", "?"),
        shard=str(rec.properties.get("shard", "?")),
        records=v.get("RecordsIn", 0.0),
        ms=v.get("BatchDuration"),
        iterator_age_ms=v.get("IteratorAge"),
        failed=v.get("BatchItemFailures", 0.0),
        counters=counters,
    )


def load_run(
    state_dir: Path,
    *,
    title: str = "run",
    produced: dict[str, Any] | None = None,
    elapsed: float | None = None,
    summary_rows: Sequence[tuple[str, str]] = (),
    since: datetime | None = None,
) -> Run:
    """Read a run from its state folder; ``since`` drops log lines of earlier runs."""
    logs = state_dir / "logs"
    run = Run(
        title=title,
        state_dir=state_dir,
        produced=produced,
        elapsed=elapsed,
        summary_rows=list(summary_rows),
    )
    try:
        run.esm_stats = dict(json.loads((state_dir / "esm" / "stats.json").read_text()))
    except (FileNotFoundError, ValueError):
        run.esm_stats = {}
    for line in read_lines(logs / "esm.log"):
        if line.get("msg") != "invoke":
            continue
        ts = _ts(line.get("ts"))
        if _after(ts, since):
            run.invokes.append(
                InvokePoint(
                    ts=ts,
                    function=str(line.get("function", "?")),
                    shard=str(line.get("shard", "?")),
                    records=int(line.get("records", 0)),
                    ok=bool(line.get("ok", True)),
                    cold=bool(line.get("cold", False)),
                    ms=float(line.get("ms", 0.0)),
                )
            )
    function_logs = sorted(p for p in logs.glob("*.log") if p.stem not in ("esm", "server", "producer"))
    # One source per consumer: its EMF documents when it emits them (they carry timestamps and the
    # iterator age), else its batch log lines; both at once would count every batch twice.
    from_emf: dict[str, list[BatchPoint]] = defaultdict(list)
    for rec in read_emf(function_logs, namespace=None):
        if "consumer" in rec.dimensions and _after(rec.timestamp, since):
            from_emf[rec.dimensions["consumer"]].append(_batch_from_emf(rec))
    from_lines: dict[str, list[BatchPoint]] = defaultdict(list)
    for path in function_logs:
        for line in read_lines(path):
            if line.get("msg") == "batch" and _after(_ts(line.get("ts")), since):
                b = _batch_from_line(line)
                from_lines[b.consumer].append(b)
    for consumer in sorted(set(from_emf) | set(from_lines)):
        run.batches += from_emf.get(consumer) or from_lines.get(consumer, [])
    run.producer = [
        r
        for r in read_emf([logs / "producer.log"])
        if r.namespace == NAMESPACE and "stream" in r.dimensions and _after(r.timestamp, since)
    ]
    return run


# -- numbers -------------------------------------------------------------------------------------
def percentiles(values: Iterable[float]) -> dict[str, float]:
    """p50, p95, p99 and max of ``values`` (empty dict when there are none)."""
    v = sorted(values)
    if not v:
        return {}
    if len(v) == 1:
        return {"p50": v[0], "p95": v[0], "p99": v[0], "max": v[0]}
    q = statistics.quantiles(v, n=100, method="inclusive")
    return {"p50": q[49], "p95": q[94], "p99": q[98], "max": v[-1]}


def _span(points: Iterable[datetime | None]) -> tuple[datetime, datetime] | None:
    ts = [t for t in points if t is not None]
    return (min(ts), max(ts)) if ts else None


def _bin_seconds(span: tuple[datetime, datetime]) -> float:
    # About 60 bins over the run, never finer than a second.
    seconds = (span[1] - span[0]).total_seconds()
    return max(1.0, math.ceil(seconds / 60))


def throughput_series(run: Run) -> dict[str, tuple[list[float], list[float]]]:
    """Per consumer: (seconds since start, user records per second), binned over the run."""
    span = _span(b.ts for b in run.batches)
    if span is None:
        return {}
    width = _bin_seconds(span)
    bins: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for b in run.batches:
        if b.ts is not None:
            bins[b.consumer][int((b.ts - span[0]).total_seconds() // width)] += b.records
    out = {}
    n = int((span[1] - span[0]).total_seconds() // width) + 1
    for consumer, counts in sorted(bins.items()):
        xs = [i * width for i in range(n)]
        out[consumer] = (xs, [counts.get(i, 0.0) / width for i in range(n)])
    return out


def summarize(run: Run) -> dict[str, Any]:
    """The report's numbers, also written as ``summary.json`` for comparing runs."""
    consumers: dict[str, dict[str, Any]] = {}
    for consumer in sorted({b.consumer for b in run.batches}):
        bs = [b for b in run.batches if b.consumer == consumer]
        totals: dict[str, float] = defaultdict(float)
        for b in bs:
            for k in ("records_in", "written", "duplicates_delivery", "duplicates_event", "quarantined"):
                totals[k] += b.counters.get(k, 0.0)
            totals["failed"] += b.failed
        span = _span(b.ts for b in bs)
        series = throughput_series(Run(run.title, None, batches=bs)).get(consumer)
        consumers[consumer] = {
            "batches": len(bs),
            **{k: int(v) for k, v in totals.items()},
            "handler_ms": percentiles(b.ms for b in bs if b.ms is not None),
            "iterator_age_ms": percentiles(b.iterator_age_ms for b in bs if b.iterator_age_ms is not None),
            "seconds": (span[1] - span[0]).total_seconds() if span else None,
            "peak_records_per_s": max(series[1]) if series else None,
        }
    functions: dict[str, dict[str, Any]] = {}
    for function in sorted({i.function for i in run.invokes}):
        inv = [i for i in run.invokes if i.function == function]
        functions[function] = {
            "invocations": len(inv),
            "kinesis_records": sum(i.records for i in inv),
            "errors": sum(not i.ok for i in inv),
            "cold_starts": sum(i.cold for i in inv),
            "invoke_ms": percentiles(i.ms for i in inv),
        }
    producer: dict[str, float] = defaultdict(float)
    for r in run.producer:
        for k, v in r.values.items():
            if k != "AggregationRatio":
                producer[k] += v
    return {
        "title": run.title,
        "elapsed_s": run.elapsed,
        "produced": {k: v for k, v in (run.produced or {}).items() if isinstance(v, int | float)},
        "producer_metrics": dict(producer),
        "consumers": consumers,
        "functions": functions,
        "esm": {
            m.get("function", uuid): {k: v for k, v in m.items() if k not in ("positions", "caught_up")}
            for uuid, m in run.esm_stats.items()
        },
    }


# -- plots ---------------------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on CI or a server
    import matplotlib.pyplot as plt

    return plt


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=11, color="#555555")
    ax.set_xticks([])
    ax.set_yticks([])


def _plot_throughput(run: Run, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.8), dpi=110)
    series = throughput_series(run)
    if series:
        # Consumers often keep pace with each other: distinct line styles keep both visible.
        for i, (consumer, (xs, ys)) in enumerate(series.items()):
            style = ("-", "--", ":", "-.")[i % 4]
            ax.plot(xs, ys, style, marker="o", markersize=3, linewidth=1.8, label=consumer)
        ax.set_xlabel("seconds since the first batch")
        ax.set_ylabel("user records / s")
        ax.legend(loc="upper right")
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    elif run.batches:
        # Batch lines without timestamps (handlers not yet logging through the JSON formatter).
        for consumer in sorted({b.consumer for b in run.batches}):
            total, ys = 0.0, []
            for b in (b for b in run.batches if b.consumer == consumer):
                total += b.records
                ys.append(total)
            ax.plot(range(1, len(ys) + 1), ys, linewidth=1.6, label=consumer)
        ax.set_xlabel("batch number (the logs carry no timestamps)")
        ax.set_ylabel("user records, cumulative")
        ax.legend(loc="upper left")
        ax.grid(alpha=0.3)
    else:
        _empty(ax, "no handler batches in this run's logs")
    ax.set_title(f"Throughput — {run.title}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _shard_label(shard: str) -> str:
    tail = shard.removeprefix("shardId-")
    return f"shard {int(tail)}" if tail.isdigit() else shard


def _plot_lag(run: Run, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.8), dpi=110)
    points = [b for b in run.batches if b.ts is not None and b.iterator_age_ms is not None]
    if points:
        start = min(b.ts for b in points if b.ts is not None)
        styles = ["-", "--", ":", "-."]
        consumers = sorted({b.consumer for b in points})
        colours: dict[str, Any] = {}
        cmap = plt.get_cmap("tab10")
        for ci, consumer in enumerate(consumers):
            for shard in sorted({b.shard for b in points if b.consumer == consumer}):
                colour = colours.setdefault(shard, cmap(len(colours) % 10))
                sel = [b for b in points if b.consumer == consumer and b.shard == shard]
                xs = [(b.ts - start).total_seconds() for b in sel if b.ts is not None]
                ys = [(b.iterator_age_ms or 0.0) / 1000 for b in sel]
                label = _shard_label(shard) + (f" · {consumer}" if len(consumers) > 1 else "")
                ax.plot(
                    xs, ys, styles[ci % len(styles)], color=colour, marker=".", linewidth=1.4, label=label
                )
        ax.set_xlabel("seconds since the first batch")
        ax.set_ylabel("iterator age at invoke (s)")
        ax.legend(loc="upper right", fontsize=8, ncol=2)
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    else:
        _empty(
            ax,
            "no iterator age in this run's logs:\n"
            "the handlers record it with pipeline.observability.metrics.batch_metrics",
        )
    ax.set_title(f"Per-shard lag — {run.title}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_latency(run: Run, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.8), dpi=110)
    series: dict[str, list[float]] = {}
    for consumer in sorted({b.consumer for b in run.batches}):
        ms = [b.ms for b in run.batches if b.consumer == consumer and b.ms is not None]
        if ms:
            series[f"{consumer} (handler)"] = ms
    for function in sorted({i.function for i in run.invokes}):
        ms = [i.ms for i in run.invokes if i.function == function]
        if ms:
            series[f"{function} (invoke, ESM)"] = ms
    if series:
        everything = [v for vs in series.values() for v in vs]
        hi = max(everything)
        bins = [hi * i / 40 for i in range(41)] if hi > 0 else 10
        for label, ms in series.items():
            p = percentiles(ms)
            text = f"{label}: p50 {p['p50']:,.0f} ms, p99 {p['p99']:,.0f} ms"
            if label.endswith("(handler)"):
                ax.hist(ms, bins=bins, alpha=0.5, histtype="stepfilled", label=text)
            else:
                # Outlines, so invocations that overlap the handlers' bars stay readable.
                ax.hist(ms, bins=bins, histtype="step", linewidth=2, label=text)
        ax.set_xlabel("batch latency (ms)")
        ax.set_ylabel("batches")
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)
    else:
        _empty(ax, "no batches or invocations in this run's logs")
    ax.set_title(f"Batch latency — {run.title}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- markdown ------------------------------------------------------------------------------------
def _ms(p: dict[str, float]) -> str:
    if not p:
        return "-"
    return f"{p['p50']:,.0f} / {p['p95']:,.0f} / {p['p99']:,.0f} / {p['max']:,.0f}"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def _markdown(run: Run, s: dict[str, Any], plots: dict[str, str], note: str | None) -> str:
    now = datetime.now(tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    out = [f"# Run report: {run.title}", "", f"Generated {now} from `{run.state_dir}`.", ""]
    if run.summary_rows:
        out += ["## Summary", ""] + _md_table(["", ""], run.summary_rows) + [""]
    produced = s["produced"] or {}
    pm = s["producer_metrics"]
    if produced or pm:
        out += ["## Producer", ""]
        rows: list[Sequence[Any]] = []
        for label, key, metric in (
            ("events (user records)", "user_records", "UserRecords"),
            ("Kinesis records", "kinesis_records", "KinesisRecordsPut"),
            ("bytes", "bytes", "BytesPut"),
            ("PutRecords calls", "requests", "PutRecordsRequests"),
            ("retries", "retries", "Retries"),
            ("throttles", "throttles", "Throttles"),
        ):
            value = produced.get(key, pm.get(metric))
            if value is not None:
                rows.append((label, f"{value:,.0f}"))
        if produced.get("elapsed"):
            rows.append(("producing time", f"{produced['elapsed']:,.2f} s"))
        out += _md_table(["", ""], rows) + [""]
    if s["consumers"]:
        out += ["## Consumers", ""]
        rows = []
        for c, m in s["consumers"].items():
            rate = (m.get("records_in", 0) / m["seconds"]) if m.get("seconds") else None
            rows.append(
                (
                    c,
                    f"{m['batches']:,}",
                    f"{m.get('records_in', 0):,}",
                    f"{m.get('written', 0):,}",
                    f"{m.get('duplicates_delivery', 0) + m.get('duplicates_event', 0):,}",
                    f"{m.get('quarantined', 0):,}",
                    f"{m.get('failed', 0):,}",
                    "-" if rate is None else f"{rate:,.0f}",
                    "-" if m.get("peak_records_per_s") is None else f"{m['peak_records_per_s']:,.0f}",
                    _ms(m["handler_ms"]),
                    _ms(m["iterator_age_ms"]),
                )
            )
        out += _md_table(
            [
                "consumer",
                "batches",
                "records in",
                "written",
                "duplicates dropped",
                "quarantined",
                "failed items",
                "records/s (avg)",
                "records/s (peak)",
                "handler ms p50/p95/p99/max",
                "iterator age ms p50/p95/p99/max",
            ],
            rows,
        )
        out.append("")
    if s["functions"]:
        out += ["## Invocations (local ESM)", ""]
        rows = [
            (
                f,
                f"{m['invocations']:,}",
                f"{m['kinesis_records']:,}",
                m["errors"],
                m["cold_starts"],
                _ms(m["invoke_ms"]),
            )
            for f, m in s["functions"].items()
        ]
        out += _md_table(
            [
                "function",
                "invocations",
                "Kinesis records",
                "errors",
                "cold starts",
                "invoke ms p50/p95/p99/max",
            ],
            rows,
        )
        out.append("")
    if s["esm"]:
        out += ["## ESM counters", ""]
        keys = ["batches", "records", "function_errors", "partial_failures", "retries", "bisections"]
        keys += ["discarded_batches", "cold_starts", "last_result"]
        rows = [[f] + [m.get(k, "-") for k in keys] for f, m in sorted(s["esm"].items())]
        out += _md_table(["mapping"] + [k.replace("_", " ") for k in keys], rows) + [""]
    if run.elapsed is not None:
        out += [f"Elapsed: {run.elapsed:,.1f} s.", ""]
    out += ["## Plots", ""]
    if note:
        out += [note, ""]
    for title, key in (
        ("Throughput over time", "throughput"),
        ("Per-shard lag", "lag"),
        ("Batch latency", "latency"),
    ):
        if key in plots:
            out += [f"### {title}", "", f"![{title}]({plots[key]})", ""]
    return "\n".join(out).rstrip() + "\n"


def write_report(folder: Path, run: Run | Path) -> Path:
    """Write ``README.md``, ``summary.json`` and the PNG plots of ``run`` into ``folder``.

    ``run`` is a ``Run`` (``load_run``) or a state folder. Returns the markdown file's path.
    Without matplotlib the markdown is still written, and says how to get the plots.
    """
    if isinstance(run, Path):
        run = load_run(run)
    folder.mkdir(parents=True, exist_ok=True)
    s = summarize(run)
    plots: dict[str, str] = {}
    note = None
    try:
        _pyplot()
    except ImportError:
        note = "Plots skipped: matplotlib is not installed (`pip install 'kinesis-pipeline[report]'`)."
    else:
        for key, draw in (("throughput", _plot_throughput), ("lag", _plot_lag), ("latency", _plot_latency)):
            draw(run, folder / PLOTS[key])
            plots[key] = PLOTS[key]
    (folder / "summary.json").write_text(json.dumps(s, indent=1, sort_keys=True, default=str) + "\n")
    md = folder / "README.md"
    md.write_text(_markdown(run, s, plots, note))
    return md


# -- the command ---------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``pipeline report``."""
    p.add_argument("--out", default=None, help="report folder (default reports/<UTC timestamp>)")
    p.add_argument("--title", default="run", help="title of the report (run)")
    p.add_argument(
        "--since", default=None, help="ignore log lines before this ISO 8601 time (earlier runs' lines)"
    )


def command(args: argparse.Namespace) -> int:
    """Run ``pipeline report`` with parsed arguments."""
    from pipeline.errors import ConfigError
    from pipeline.settings import Settings

    state = Path(args.state_dir) if getattr(args, "state_dir", None) else Settings.from_env().state_dir
    if not (state / "logs").is_dir():
        raise ConfigError(f"no logs under {state}: run `make up` (or pass --state-dir) first")
    since = None
    if args.since:
        since = _ts(args.since)
        if since is None:
            raise ConfigError(f"--since {args.since!r} is not an ISO 8601 time such as 2026-11-27T00:15:00Z")
    out = Path(args.out) if args.out else Path("reports") / datetime.now(tz=UTC).strftime("%Y%m%d-%H%M%S")
    md = write_report(out, load_run(state, title=args.title, since=since))
    print(f"report written to {md}")
    return 0
