"""``pipeline produce``: generated events, or events from a JSON Lines file, through the producer."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, PipelineError
from pipeline.settings import Settings

MAX_REPORTED_ERRORS = 20


def progress(label: str, done: int, total: int, started: float) -> None:
    """One-line progress bar on stderr (only the final line when stderr is not a terminal)."""
    if not sys.stderr.isatty() and done != total:
        return
    width = 30
    frac = done / total if total else 1.0
    rate = done / max(time.monotonic() - started, 1e-9)
    bar = "#" * int(frac * width)
    end = "\n" if done == total else ""
    sys.stderr.write(f"\r{label} [{bar:<{width}}] {done:,}/{total:,} {rate:,.0f}/s{end}")
    sys.stderr.flush()


def _blocks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of ``size`` consecutive items (the last one shorter), each taken by ``islice``.

    >>> list(_blocks(range(5), 2))
    [[0, 1], [2, 3], [4]]
    >>> list(_blocks([], 3))
    []
    """
    it = iter(items)
    while block := list(itertools.islice(it, size)):
        yield block


def produce(
    settings: Settings,
    count: int,
    customers: int = 1000,
    rate: float = 0.0,
    seed: int | None = None,
    quiet: bool = False,
    events: Iterable[Mapping[str, Any]] | None = None,
    validate: bool = False,
) -> dict[str, Any]:
    """Produce ``count`` events (generated, or the first ``count`` of ``events``).

    Returns the producer's statistics plus ``elapsed`` (s), ``failed`` (events not stored, with
    ``first_error``) and ``last_positions`` (shard -> (sequence number, sub-sequence)).
    """
    from pipeline.events import generate
    from pipeline.memory import release_large_blocks
    from producers.producer import KinesisProducer

    # PutRecords bodies of up to 5 MB are made and freed all along (see pipeline.memory).
    release_large_blocks()
    source: Iterable[Mapping[str, Any]] = (
        generate(count, customers=customers, seed=seed) if events is None else events
    )
    started = time.monotonic()
    done = 0
    # Blocks of events through put_events (one routing and aggregation pass each); with a rate,
    # blocks of 50 ms of events, so the pacing stays smooth.
    size = 500 if rate <= 0 else max(1, min(500, int(rate / 20)))
    shown = 0
    with KinesisProducer(settings.stream_name, settings, validate_events=validate) as producer:
        for block in _blocks(itertools.islice(source, max(count, 0)), size):
            # No futures: the producer counts failures and keeps the last stored position per
            # shard itself (per Kinesis record rather than per user record).
            producer.put_events(block, results=False)
            done += len(block)
            if rate > 0:
                ahead = done / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            if not quiet and done - shown >= 1000 and done < count:
                shown = done
                progress("producing", done, count, started)
        producer.flush()
        stats = dict(producer.stats)
        stats["first_error"] = producer.first_error
        stats["last_positions"] = producer.last_positions()
    _emit_metrics(settings, stats)
    if not quiet:
        progress("producing", done, max(count, done), started)
    stats["elapsed"] = time.monotonic() - started
    return stats


# -- events from a file ---------------------------------------------------------------------
def read_events(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON or the parse error) for each non-blank line of a JSON Lines file."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except ValueError as exc:
                yield n, exc


def check_file(path: Path) -> tuple[int, list[str], int]:
    """Validate every line against the schema: (valid events, error lines to show, bad line count)."""
    from pipeline.codecs.avro import SchemaRegistry
    from producers.validation import schema_errors

    if not path.is_file():
        raise ConfigError(f"--from {path}: no such file")
    reader = SchemaRegistry.load().reader
    good = 0
    bad = 0
    shown: list[str] = []
    try:
        for n, event in read_events(path):
            if isinstance(event, ValueError):
                problems = [f"not JSON ({event})"]
            else:
                problems = schema_errors(event, reader)
            if problems:
                bad += 1
                if len(shown) < MAX_REPORTED_ERRORS:
                    shown.append(f"{path}:{n}: {'; '.join(problems)}")
            else:
                good += 1
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--from {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return good, shown, bad


def _valid_events(path: Path) -> Iterator[Mapping[str, Any]]:
    from pipeline.codecs.avro import SchemaRegistry
    from producers.validation import schema_errors

    reader = SchemaRegistry.load().reader
    for _, event in read_events(path):
        if not isinstance(event, ValueError) and not schema_errors(event, reader):
            yield event


# -- command line ---------------------------------------------------------------------------
def _emit_metrics(settings: Settings, stats: dict[str, Any]) -> None:
    """Append the run's producer metrics (EMF) to the local stack's producer log, if there is one."""
    logs = settings.state_dir / "logs"
    if not logs.is_dir():
        return
    from pipeline.observability.metrics import producer_metrics

    with (logs / "producer.log").open("a") as out:
        producer_metrics(stats, stream=settings.stream_name, out=out)


def add_arguments(pr: argparse.ArgumentParser) -> None:
    """Options of ``pipeline produce``."""
    pr.add_argument(
        "--count", type=int, default=None, help="number of events (1000; with --from: every line of the file)"
    )
    pr.add_argument("--rate", type=float, default=0.0, help="events per second (0: no limit)")
    pr.add_argument("--customers", type=int, default=1000, help="distinct customers (1000)")
    pr.add_argument("--seed", type=int, default=None, help="random seed, for repeatable runs")
    pr.add_argument(
        "--from",
        dest="source",
        metavar="FILE.jsonl",
        default=None,
        help="send the events of a JSON Lines file (one event object per line) instead of generated ones; "
        "every line is checked against the schema first and nothing is sent if one is bad",
    )
    pr.add_argument(
        "--skip-invalid",
        action="store_true",
        help="with --from: report bad lines but send the good ones",
    )


def statistics(produced: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Rows of the final statistics table."""
    n = produced["user_records"]
    kin = max(produced["kinesis_records"], 1)
    elapsed = max(produced["elapsed"], 1e-9)
    stored = max(produced.get("stored", n), 1)
    return [
        ("events sent", f"{n:,}"),
        ("events stored", f"{produced.get('stored', n):,}"),
        ("events failed", f"{produced.get('failed', 0):,}"),
        ("Kinesis records", f"{produced['kinesis_records']:,} ({n / kin:,.1f} events per record)"),
        ("PutRecords calls", f"{produced['requests']:,}"),
        ("retries", f"{produced['retries']:,} ({produced['throttles']:,} throttled)"),
        ("bytes stored", f"{produced['bytes']:,} ({produced['bytes'] / elapsed / 1024 / 1024:,.2f} MiB/s)"),
        ("mean buffered time", f"{produced.get('buffered_ms', 0.0) / stored:,.1f} ms"),
        ("elapsed", f"{produced['elapsed']:,.2f} s ({n / elapsed:,.0f} events/s)"),
    ]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``pipeline produce`` with parsed arguments."""
    count = args.count
    events: Iterable[Mapping[str, Any]] | None = None
    if count is not None and count < 0:
        raise ConfigError(f"--count {count}: give a number of events >= 0")
    if args.source:
        path = Path(args.source)
        good, shown, bad = check_file(path)
        for line in shown:
            print(line, file=sys.stderr)
        if bad > len(shown):
            print(f"... and {bad - len(shown):,} more bad lines", file=sys.stderr)
        if bad and not args.skip_invalid:
            raise PipelineError(
                f"{path}: {bad:,} of {good + bad:,} lines do not match the schema; nothing was sent "
                f"(fix them, or pass --skip-invalid to send the {good:,} good ones)"
            )
        events = _valid_events(path)
        count = good if count is None else min(count, good)
    elif count is None:
        count = 1000
    produced = produce(
        settings,
        count,
        customers=args.customers,
        rate=args.rate,
        seed=args.seed,
        events=events,
        validate=False,  # file events were checked above; generated ones are valid by construction
    )
    width = max(len(k) for k, _ in statistics(produced))
    print("\n".join(f"  {k:<{width}}  {v}" for k, v in statistics(produced)))
    if produced["failed"]:
        print(
            f"error: {produced['failed']:,} events were not stored: {produced['first_error']}",
            file=sys.stderr,
        )
        return 1
    return 0
