"""``make load``: sustained load through the whole embedded pipeline, verified at the end.

Produces EVENTS (default 1,000,000) over CUSTOMERS (default 10,000) entity keys into a 4-shard
stream with per-shard limits on, while the local ESM runner runs the real handlers. Reports
sustained events/s, freshness, per-shard lag over time, CPU seconds per event of each of our
processes (the emulator apart), peak memory, and checks every event id is in S3 exactly once and
the DynamoDB state is exact.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.stack.processes import ServerProcess, children, pid_file

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


CALIBRATION_STEPS = 10_000


def _calibrate() -> tuple[float, float]:
    """(thread CPU ns per step, CPU s taken) of a fixed pure-Python loop: how fast the machine runs
    Python at the moment. This machine's speed moves by up to 2x from minute to minute (other
    tenants of its host), and every CPU figure of the run moves with it."""
    started = time.thread_time_ns()
    total = 0
    for i in range(CALIBRATION_STEPS):
        total += i * i % 7
    spent = time.thread_time_ns() - started
    return spent / CALIBRATION_STEPS, spent / 1e9


class Sampler(threading.Thread):
    """Samples CPU and memory of the processes every second, the consumers' lag and the machine's
    speed (``_calibrate``; its few milliseconds a second are taken out of the producer's CPU)."""

    def __init__(self, pids: dict[str, int], runner_pid: int, settings: Any) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.runner_pid = runner_pid
        self.settings = settings
        self.samples: list[dict[str, Any]] = []
        self.worker_cpu: dict[int, float] = {}
        self.worker_peak: dict[int, float] = {}
        self.calibration: list[float] = []
        self.calibration_cpu = 0.0
        self.stop_event = threading.Event()

    def run(self) -> None:
        from pipeline.stack import inspect

        t0 = time.monotonic()
        while not self.stop_event.wait(1.0):
            for w in children(self.runner_pid):
                self.worker_cpu[w] = max(self.worker_cpu.get(w, 0.0), _cpu_seconds(w))
                self.worker_peak[w] = max(self.worker_peak.get(w, 0.0), _rss_mb(w))
            ns, spent = _calibrate()
            self.calibration.append(ns)
            self.calibration_cpu += spent
            row: dict[str, Any] = {"t": round(time.monotonic() - t0, 1), "calibration_ns": round(ns, 1)}
            for name, pid in self.pids.items():
                row[f"{name}_rss_mb"] = round(_rss_mb(pid), 1)
            try:
                row["checkpoints"] = {
                    k: v.get("records_in", 0) for k, v in inspect.checkpoints(self.settings).items()
                }
            except Exception:  # the stack is busy; skip this sample's lag
                pass
            self.samples.append(row)


def main(argv: list[str] | None = None) -> int:
    """Run the load benchmark; return 0 when every event landed exactly once."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--events",
        type=int,
        default=int(os.environ.get("EVENTS", 1_000_000)),
        help="events to produce (EVENTS)",
    )
    p.add_argument(
        "--customers",
        type=int,
        default=int(os.environ.get("CUSTOMERS", 10_000)),
        help="distinct customers, the partition keys (CUSTOMERS)",
    )
    p.add_argument("--shards", type=int, default=4, help="shards of the stream")
    p.add_argument(
        "--rate",
        type=float,
        default=float(os.environ.get("RATE", 0)),
        help="target events/s (0: as fast as possible)",
    )
    p.add_argument(
        "--state-writes",
        choices=("update", "transact"),
        default=os.environ.get("STATE_WRITES", "transact"),
        help="the state writer's write mode (PIPELINE_STATE_WRITES); transact by default: 100 customers\n"
        "per request, where one UpdateItem per customer costs the emulator a request each",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=2000,
        help="events produced and consumed before measuring (cold starts and the first reads are\n"
        "not part of a sustained rate); 0 measures from a cold pipeline",
    )
    p.add_argument(
        "--state-window",
        type=int,
        default=int(os.environ.get("STATE_WINDOW", 5)),
        help="the state writer mapping's MaximumBatchingWindowInSeconds (default 5): DynamoDB writes\n"
        "are one per customer per batch, so longer batches coalesce more events per write; freshness\n"
        "is measured on the lake writer, whose window stays 0",
    )
    p.add_argument("--timeout", type=float, default=3600, help="seconds for the consumers to catch up")
    p.add_argument("--out", default=None, help="folder for the JSON report (default reports/load-<ts>)")
    args = p.parse_args(argv if argv is not None else sys.argv[2:] if len(sys.argv) > 2 else [])

    from consumers.state_writer.model import expected_state
    from pipeline.cli import wait_for_consumers
    from pipeline.events import generate
    from pipeline.settings import Settings
    from pipeline.stack import inspect
    from pipeline.stack.bootstrap import bootstrap
    from producers.cli import produce

    work = Path(tempfile.mkdtemp(prefix="pipeline-load-"))
    out = Path(args.out or f"reports/load-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    server = ServerProcess(work / "server.log")
    settings = replace(
        Settings(),
        endpoint_url=server.endpoint_url,
        port=server.port,
        state_dir=work / "state",
        shard_count=args.shards,
        state_writes=args.state_writes,
    )
    (settings.state_dir / "logs").mkdir(parents=True)
    runner = None
    try:
        from pipeline.stack.bootstrap import CONSUMERS

        consumers = tuple(
            replace(c, window_seconds=args.state_window) if c.name == "state-writer" else c for c in CONSUMERS
        )
        bootstrap(settings, consumers)
        runner = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline.cli",
                "esm",
                "run",
                "--port",
                str(server.port),
                "--state-dir",
                str(settings.state_dir),
            ],
            stdout=open(settings.state_dir / "logs" / "esm.log", "wb"),
            stderr=subprocess.STDOUT,  # noqa: SIM115
            start_new_session=True,
        )
        pid_file(settings.state_dir, "esm").write_text(str(runner.pid))  # as `make up` records it
        sampler = Sampler(
            {"server": server.proc.pid, "runner": runner.pid, "producer": os.getpid()}, runner.pid, settings
        )
        sampler.start()
        print(
            f"load: {args.events:,} events over {args.customers:,} customers, {args.shards} shards,"
            f" limits on, rate {'max' if not args.rate else f'{args.rate:,.0f}/s'},"
            f" state writes {args.state_writes}, state writer window {args.state_window} s",
            flush=True,
        )
        produced_ids: set[str] = set()
        last: dict[str, tuple[int, int]] = {}
        expected: dict[str, Any] = {}
        if args.warmup:
            _warm_up(settings, args.warmup, args.customers, produced_ids, expected, last, args.timeout)
        generator_us = _generator_cost(min(args.events, 20_000), args.customers)
        worker_cpu0 = {w: _cpu_seconds(w) for w in children(runner.pid)}
        runner_cpu0 = _cpu_seconds(runner.pid)
        server_cpu0 = _cpu_seconds(server.proc.pid)
        sampler.samples.clear()
        sampler.calibration.clear()
        calibration_cpu0 = sampler.calibration_cpu
        measure_from = time.time()
        cpu0 = _cpu_seconds(os.getpid())
        t0 = time.monotonic()
        produced = produce(
            settings,
            args.events,
            customers=args.customers,
            rate=args.rate,
            seed=1,
            quiet=not sys.stderr.isatty(),
        )
        if produced["failed"]:
            print(f"load: {produced['failed']:,} events were not stored: {produced['first_error']}")
            return 1
        last.update(produced["last_positions"])
        pstats = {k: v for k, v in produced.items() if k not in ("last_positions", "first_error")}
        produce_s = time.monotonic() - t0
        producer_cpu = _cpu_seconds(os.getpid()) - cpu0 - (sampler.calibration_cpu - calibration_cpu0)
        if not wait_for_consumers(settings, last, ["lake-writer", "state-writer"], args.timeout):
            print("load: consumers did not catch up in time")
            return 1
        total_s = time.monotonic() - t0
        producer_peak = _rss_mb(os.getpid(), "VmHWM")  # before the verification's own memory
        sampler.stop_event.set()
        sampler.join()
        runner_cpu = _cpu_seconds(runner.pid) - runner_cpu0
        worker_cpu = sum(cpu - worker_cpu0.get(w, 0.0) for w, cpu in sampler.worker_cpu.items())
        server_cpu = _cpu_seconds(server.proc.pid) - server_cpu0
        # The event generator runs in the producer's process; its cost, measured apart, is taken
        # out of the producer's figure (what remains is put_event, the results and the producer).
        producer_cpu = max(0.0, producer_cpu - generator_us * args.events / 1e6)
        ours = producer_cpu + runner_cpu + worker_cpu
        print("load: verifying ...", flush=True)
        from collections import Counter

        ids = Counter(str(e["event_id"]) for e in inspect.lake_events(settings))
        # The ids and the expected state are regenerated from the generator's seed rather than kept
        # while producing, so the producer's process neither grows with the event count nor spends
        # the run's CPU on the verification's bookkeeping.
        chunk: list[dict[str, Any]] = []
        for event in generate(args.events, customers=args.customers, seed=1):
            produced_ids.add(str(event["event_id"]))
            chunk.append(event)
            if len(chunk) == 50_000:
                _merge(expected, expected_state(chunk))
                chunk.clear()
        _merge(expected, expected_state(chunk))
        lost = len(produced_ids - set(ids))
        dup = sum(1 for n in ids.values() if n > 1)
        fields = ("events", "orders_created", "orders_cancelled", "paid_cents")
        state = {k: {f: v[f] for f in fields} for k, v in inspect.state_items(settings).items()}
        state_ok = state == expected
        freshness = _freshness(settings.state_dir / "logs" / "pipeline-lake-writer.log", measure_from)
        report = {
            "events": args.events,
            "customers": args.customers,
            "shards": args.shards,
            "state_writes": args.state_writes,
            "state_writer_window_s": args.state_window,
            "produce_seconds": round(produce_s, 2),
            "end_to_end_seconds": round(total_s, 2),
            "sustained_events_per_s": round(args.events / total_s),
            "producer_events_per_s": round(args.events / produce_s),
            "warmup_events": args.warmup,
            "cpu_us_per_event": {
                "event_generator_excluded": round(generator_us, 1),
                "producer": round(producer_cpu / args.events * 1e6, 1),
                "esm_runner": round(runner_cpu / args.events * 1e6, 1),
                "handler_workers": round(worker_cpu / args.events * 1e6, 1),
                "ours_total": round(ours / args.events * 1e6, 1),
                "emulator_moto_server": round(server_cpu / args.events * 1e6, 1),
            },
            # The machine's speed while measuring: every figure above moves with it.
            "calibration_ns_per_step": _spread(sampler.calibration),
            "peak_rss_mb": {
                "producer": round(producer_peak, 1),
                "esm_runner": round(_rss_mb(runner.pid, "VmHWM"), 1),
                "handler_worker_max": round(max(sampler.worker_peak.values(), default=0), 1),
                "emulator_moto_server": round(_rss_mb(server.proc.pid, "VmHWM"), 1),
            },
            "producer": {k: v for k, v in pstats.items() if isinstance(v, int | float)},
            "freshness_ms": freshness,
            "rss_growth_mb_first_to_last_quarter": _growth(sampler.samples),
            "lost": lost,
            "duplicated": dup,
            "state_exact": state_ok,
            "bottleneck": _bottleneck(server_cpu, producer_cpu, runner_cpu, worker_cpu, total_s),
            "samples": sampler.samples,
        }
        (out / "load.json").write_text(json.dumps(report, indent=1))
        from pipeline.observability.report import load_run, write_report

        rows = [(k, str(v)) for k, v in report.items() if k not in ("samples", "producer")]
        write_report(
            out,
            load_run(
                settings.state_dir, title="make load", produced=pstats, elapsed=total_s, summary_rows=rows
            ),
        )
        for k, v in report.items():
            if k != "samples":
                print(f"  {k}: {v}")
        print(f"load: report in {out} (README.md, load.json, plots)")
        return 0 if lost == 0 and dup == 0 and state_ok else 1
    finally:
        if runner is not None and runner.poll() is None:
            runner.send_signal(signal.SIGTERM)
            try:
                runner.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(runner.pid, signal.SIGKILL)
        server.stop()


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _spread(values: list[float]) -> dict[str, float]:
    """Median, least and most of ``values``, and the share of them over 1.5x the least: the part of
    the run the machine spent in a slow state (empty when there are none)."""
    if not values:
        return {}
    least = min(values)
    return {
        "median": round(_median(values), 1),
        "min": round(least, 1),
        "max": round(max(values), 1),
        "slow_share": round(sum(1 for v in values if v > 1.5 * least) / len(values), 2),
    }


def _growth(samples: list[dict[str, Any]]) -> dict[str, float]:
    """Peak RSS of the last quarter of the run minus that of the first quarter, per process."""
    if len(samples) < 8:
        return {}
    q = len(samples) // 4
    out = {}
    for key in (k for k in samples[0] if k.endswith("_rss_mb")):
        first = max(s.get(key, 0) for s in samples[:q])
        last = max(s.get(key, 0) for s in samples[-q:])
        out[key.removesuffix("_rss_mb")] = round(last - first, 1)
    return out


def _warm_up(
    settings: Any,
    n: int,
    customers: int,
    produced_ids: set[str],
    expected: dict[str, Any],
    last: dict[str, tuple[int, int]],
    timeout: float,
) -> None:
    """Produce ``n`` events and wait until both consumers have them (workers warm, readers on)."""
    from consumers.state_writer.model import expected_state
    from pipeline.cli import wait_for_consumers
    from pipeline.events import generate
    from producers.cli import produce

    seed = 1_000_003  # ids apart from the run's
    produced = produce(settings, n, customers=customers, seed=seed, quiet=True)
    if produced["failed"]:
        raise SystemExit(f"load: warm-up events were not stored: {produced['first_error']}")
    last.update(produced["last_positions"])
    events = list(generate(n, customers=customers, seed=seed))
    produced_ids.update(str(e["event_id"]) for e in events)
    _merge(expected, expected_state(events))
    if not wait_for_consumers(settings, last, ["lake-writer", "state-writer"], timeout):
        raise SystemExit("load: the warm-up events were not consumed in time")
    print(f"  warm-up: {n:,} events consumed", flush=True)


def _generator_cost(n: int, customers: int, rounds: int = 5) -> float:
    """CPU µs per event of the event generator alone (part of the producer process's CPU): the
    least of several rounds, so that a round slowed by the machine's other load does not take
    more than the generator's cost out of the producer's figure."""
    from pipeline.events import generate

    best = float("inf")
    for _ in range(rounds):
        t = time.process_time()
        for _ in generate(n, customers=customers, seed=2):
            pass
        best = min(best, (time.process_time() - t) / max(n, 1) * 1e6)
    return best


def _freshness(log: Path, since: float = 0.0) -> dict[str, float]:
    """Arrival in Kinesis → written to S3, per lake batch, from the lake writer's batch lines.

    Each batch's oldest record waited ``record_age_ms`` before the batch started and ``ms`` while it
    ran: their sum bounds the freshness of every record in the batch from above (the newest record's
    is ``iterator_age_ms + ms``). Percentiles are over records, each counted at its batch's bound.
    """
    from pipeline.observability.logs import read_lines

    values: list[float] = []
    from datetime import datetime

    for line in read_lines(log):
        if line.get("msg") == "batch" and "record_age_ms" in line:
            ts = datetime.fromisoformat(str(line.get("ts", "")).replace("Z", "+00:00")).timestamp()
            if ts < since:
                continue  # a warm-up batch
            bound = float(line["record_age_ms"]) + float(line.get("ms", 0))
            values += [bound] * int(line.get("written", 0) or 0)
    if not values:
        return {}
    values.sort()
    pick = lambda q: round(values[min(len(values) - 1, int(q * len(values)))], 1)  # noqa: E731
    return {"p50": pick(0.50), "p99": pick(0.99), "max": round(values[-1], 1), "records": len(values)}


def _merge(into: dict[str, dict[str, int]], more: dict[str, dict[str, int]]) -> None:
    for key, vals in more.items():
        cur = into.setdefault(key, {k: 0 for k in vals})
        for k, v in vals.items():
            cur[k] += v


def _bottleneck(server: float, producer: float, runner: float, workers: float, wall: float) -> str:
    shares = {
        "emulator (moto server)": server,
        "producer": producer,
        "ESM runner": runner,
        "handler workers": workers,
    }
    name, cpu = max(shares.items(), key=lambda kv: kv[1])
    return f"{name}: {cpu:.1f} CPU s of {wall:.1f} s wall ({cpu / wall:.0%} of one core); " + ", ".join(
        f"{k} {v:.1f} s" for k, v in shares.items()
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
