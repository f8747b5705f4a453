"""``pipeline produce``: generated events through the aggregating producer."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from pipeline.settings import Settings


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


def produce(
    settings: Settings,
    count: int,
    customers: int = 1000,
    rate: float = 0.0,
    seed: int | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Produce ``count`` generated events; return the producer's statistics and positions."""
    from pipeline.events import generate
    from producers.producer import KinesisProducer

    started = time.monotonic()
    futures = []
    last_seen: dict[str, tuple[int, int]] = {}
    with KinesisProducer(settings.stream_name, settings) as producer:
        for i, event in enumerate(generate(count, customers=customers, seed=seed), 1):
            futures.append(producer.put_event(event))
            if rate > 0:
                ahead = i / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            if not quiet and i % 1000 == 0 and i < count:
                progress("producing", i, count, started)
        producer.flush()
        stats = dict(producer.stats)
    for fut in futures:
        r = fut.result()
        pos = (int(r.sequence_number), r.sub_sequence)
        if pos > last_seen.get(r.shard_id, (-1, -1)):
            last_seen[r.shard_id] = pos
    if not quiet:
        progress("producing", count, count, started)
    stats["elapsed"] = time.monotonic() - started
    stats["last_positions"] = last_seen
    return stats


def add_arguments(pr: argparse.ArgumentParser) -> None:
    """Options of ``pipeline produce``."""
    pr.add_argument("--count", type=int, default=1000, help="number of events (1000)")
    pr.add_argument("--rate", type=float, default=0.0, help="events per second (0: no limit)")
    pr.add_argument("--customers", type=int, default=1000, help="distinct customers (1000)")
    pr.add_argument("--seed", type=int, default=None, help="random seed, for repeatable runs")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``pipeline produce`` with parsed arguments."""
    produced = produce(settings, args.count, customers=args.customers, rate=args.rate, seed=args.seed)
    kin = max(produced["kinesis_records"], 1)
    print(
        f"produced {produced['user_records']:,} events in {produced['kinesis_records']:,} "
        f"Kinesis records ({produced['user_records'] / kin:,.1f} per record), "
        f"{produced['requests']} PutRecords calls, {produced['retries']} retries, "
        f"{produced['elapsed']:.2f} s"
    )
    return 0
