"""``pipeline``: the operator CLI (local stack, producing, status, the local ESM)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError, StackError
from pipeline.settings import Settings

SERVER = "server"
ESM = "esm"


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings for a command: the environment, the state folder and which stack to talk to.

    ``PIPELINE_BACKEND=aws`` talks to AWS itself (credentials and region from the usual places);
    an explicit ``AWS_ENDPOINT_URL`` wins; otherwise the embedded stack on its recorded port.
    """
    s = Settings.from_env()
    if os.environ.get("PIPELINE_BACKEND", "local") == "aws" and not os.environ.get("AWS_ENDPOINT_URL"):
        state = Path(args.state_dir) if getattr(args, "state_dir", None) else s.state_dir
        return replace(s, state_dir=state, endpoint_url=None)
    state = Path(args.state_dir) if getattr(args, "state_dir", None) else s.state_dir
    s = replace(s, state_dir=state)
    stack_file = state / "stack.json"
    port = getattr(args, "port", None)
    if port is None and stack_file.exists() and not os.environ.get("AWS_ENDPOINT_URL"):
        port = json.loads(stack_file.read_text()).get("port")
    if os.environ.get("AWS_ENDPOINT_URL") and port is None:
        return s
    return s.local(port or s.port)


def wait_for_consumers(
    settings: Settings, last_positions: dict[str, tuple[int, int]], consumers: Sequence[str], timeout: float
) -> bool:
    """Wait until every consumer's checkpoint of every shard reached the produced positions."""
    from pipeline.stack import inspect, processes

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if caught_up(settings, last_positions, consumers):
            return True
        if processes.running_pid(settings.state_dir, ESM) is None:
            raise StackError("the ESM runner is not running; see `make logs`")
        for m in inspect.esm_stats(settings.state_dir).values():
            if m["discarded_batches"]:
                raise StackError(
                    f"{m['function']} discarded {m['discarded_batches']} batches "
                    f"after retries ({m['last_result']}); see `make logs`"
                )
        time.sleep(0.25)
    return False


def caught_up(
    settings: Settings, last_positions: dict[str, tuple[int, int]], consumers: Sequence[str]
) -> bool:
    """True when every consumer's checkpoint of every shard reached the produced positions."""
    from pipeline.codecs.positions import encode_position
    from pipeline.stack.inspect import checkpoints

    targets = {shard: encode_position(seq, sub) for shard, (seq, sub) in last_positions.items()}
    cps = checkpoints(settings)
    return all(
        (cps.get(f"{c}#{shard}", {}).get("position") or "") >= pos
        for c in consumers
        for shard, pos in targets.items()
    )


def _await_runner_counters(state_dir: Path, since: float, timeout: float = 3.0) -> None:
    """Wait until the ESM runner has written its counters after ``since`` (it writes them once a
    second), so the summary counts the invocations that just caught up."""
    path = state_dir / "esm" / "stats.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if path.stat().st_mtime > since:
                return
        except FileNotFoundError:
            pass
        time.sleep(0.1)


def summary(settings: Settings, produced: dict[str, Any], elapsed: float) -> list[tuple[str, str]]:
    """Rows of the end-of-run table."""
    from pipeline.stack import inspect

    keys = inspect.lake_keys(settings)
    ids = inspect.lake_event_ids(settings, keys)
    cps = inspect.checkpoints(settings)
    esm = inspect.esm_stats(settings.state_dir)
    n = produced["user_records"]
    kin = max(produced["kinesis_records"], 1)
    rows = [
        ("events produced", f"{n:,}"),
        ("Kinesis records", f"{produced['kinesis_records']:,} (aggregation {n / kin:,.1f} events/record)"),
        ("PutRecords calls", f"{produced['requests']:,}"),
    ]
    for m in sorted(esm.values(), key=lambda m: m["function"]):
        rows.append(
            (f"batches invoked: {m['function']}", f"{m['batches']:,} ({m['cold_starts']} cold starts)")
        )
    rows += [
        ("S3 objects (lake)", f"{len(keys):,}"),
        ("events in S3", f"{sum(ids.values()):,} ({len(ids):,} distinct)"),
        ("DynamoDB state items", f"{len(inspect.state_items(settings)):,}"),
        (
            "duplicates dropped",
            f"{sum(c.get('duplicates_delivery', 0) + c.get('duplicates_event', 0) for c in cps.values()):,}",
        ),
        ("quarantined", f"{inspect.quarantined(settings):,}"),
        ("elapsed", f"{elapsed:,.1f} s"),
        ("events/s (end to end)", f"{n / max(elapsed, 1e-9):,.0f}"),
    ]
    return rows


def _table(rows: Sequence[tuple[str, str]]) -> str:
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{w}}  {v}" for k, v in rows)


# -- commands -------------------------------------------------------------------------------
def cmd_up(args: argparse.Namespace) -> int:
    from pipeline.stack import processes
    from pipeline.stack.bootstrap import CONSUMERS, bootstrap

    settings = settings_from_args(args)
    state = settings.state_dir
    state.mkdir(parents=True, exist_ok=True)
    port = settings.port
    localstack = args.backend == "localstack"
    pid = processes.running_pid(state, ESM if localstack else SERVER)
    if pid is not None:
        what = "ESM runner against LocalStack" if localstack else "embedded stack"
        print(
            f"already up: {what} (pid {pid}) at {settings.endpoint_url}; "
            f"`make status` shows it, `make down` stops it"
        )
        return 0
    started = time.monotonic()
    started_at = datetime.now(tz=UTC)
    if localstack:
        if not processes.port_in_use("127.0.0.1", port):
            raise StackError(
                f"LocalStack is not answering on 127.0.0.1:{port}; start it with "
                f"`docker compose up -d` (or choose its port with `make up BACKEND=localstack PORT=<port>`)"
            )
        print(f"using LocalStack at {settings.endpoint_url}")
    else:
        if processes.port_in_use("127.0.0.1", port):
            raise StackError(
                f"port {port} on 127.0.0.1 is taken by another program; "
                f"choose a free one with `make up PORT=<port>`"
            )
        spid = processes.start(state, SERVER, ["pipeline.stack.server", "--port", str(port)])
        processes.wait_for_port("127.0.0.1", port, spid, log=processes.log_file(state, SERVER))
        print(f"embedded stack up at {settings.endpoint_url} (pid {spid})")
    (state / "stack.json").write_text(json.dumps({"port": port, "backend": args.backend}))
    # On LocalStack the mappings are created disabled, so that its own poller (no bisect, window,
    # parallelization or tumbling windows) stays idle; the pipeline's runner runs them.
    bootstrap(settings, enabled=not localstack)
    print(
        f"created stream {settings.stream_name} ({settings.shard_count} shards), bucket "
        f"{settings.bucket}, tables, on-failure queues, {len(CONSUMERS)} functions and mappings"
    )
    runner_args = ["pipeline.cli", "esm", "run", "--port", str(port), "--state-dir", str(state)]
    epid = processes.start(state, ESM, runner_args + (["--run-disabled"] if localstack else []))
    print(f"local ESM runner started (pid {epid}); logs in {state / 'logs'}")
    if args.events <= 0:
        return 0
    from producers.cli import produce

    produced = produce(settings, args.events, customers=args.customers)
    if produced.get("failed"):
        raise StackError(f"{produced['failed']} events were not stored: {produced.get('first_error')}")
    print(
        f"produced {produced['user_records']:,} events in {produced['kinesis_records']:,} "
        f"Kinesis records; waiting for both consumers ..."
    )
    if not wait_for_consumers(
        settings, produced["last_positions"], [c.name for c in CONSUMERS], args.timeout
    ):
        raise StackError(
            f"consumers did not catch up within {args.timeout:.0f} s; see `make logs` and `make status`"
        )
    elapsed = time.monotonic() - started
    _await_runner_counters(settings.state_dir, time.time())
    rows = summary(settings, produced, elapsed)
    print("\nsummary\n" + _table(rows))
    from pipeline.observability.report import load_run, write_report

    folder = Path(args.reports) / time.strftime("up-%Y%m%d-%H%M%S")
    run = load_run(
        settings.state_dir,
        title="make up",
        produced=produced,
        elapsed=elapsed,
        summary_rows=rows,
        since=started_at,
    )
    print(f"\nreport: {write_report(folder, run)}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from pipeline.stack import processes

    settings = settings_from_args(args)
    stopped = []
    for name in (ESM, SERVER):
        pid = processes.stop(settings.state_dir, name)
        if pid is not None:
            stopped.append(f"{name} (pid {pid})")
    print("stopped " + ", ".join(stopped) if stopped else "nothing was running")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from pipeline.observability import status

    return status.run(settings_from_args(args), watch=args.watch, interval=args.interval)


def cmd_produce(args: argparse.Namespace) -> int:
    from producers.cli import run

    return run(args, settings_from_args(args))


def cmd_esm_run(args: argparse.Namespace) -> int:
    from pipeline.esm.runner import EsmRunner
    from pipeline.memory import release_large_blocks
    from pipeline.observability.logs import configure

    # Before any thread: the runner's reads and events are large blocks, made and freed all along.
    release_large_blocks()
    configure("esm")
    settings = settings_from_args(args)
    runner = EsmRunner(settings, settings.state_dir, run_disabled=args.run_disabled)
    runner.load_mappings()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    runner.start()
    print(f"ESM runner: {len(runner.mappings)} mappings against {settings.endpoint_url}", flush=True)
    try:
        while not done.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    runner.stop()
    return 0


def cmd_esm_reset(args: argparse.Namespace) -> int:
    from pipeline.esm.runner import PositionStore

    settings = settings_from_args(args)
    PositionStore(settings.state_dir / "esm").reset()
    print("ESM positions forgotten: the next run starts from each mapping's starting position")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    folder = settings.state_dir / "logs"
    only = getattr(args, "function", None)

    def wanted() -> list[Path]:
        return [p for p in sorted(folder.glob("*.log")) if not only or only in p.stem]

    if not wanted() and not args.follow:
        print("no logs yet: run `make up` first")
        return 0
    files: dict[Path, Any] = {}
    for p in wanted():
        files[p] = p.open()
        for line in files[p].readlines()[-args.lines :]:
            sys.stdout.write(f"{p.stem}: {line}")
    sys.stdout.flush()
    while args.follow:
        # Functions get their log file on first use: pick up files that appear meanwhile.
        for p in wanted():
            if p not in files:
                files[p] = p.open()
        quiet = True
        for p, f in files.items():
            for line in f.readlines():
                quiet = False
                sys.stdout.write(f"{p.stem}: {line}")
        sys.stdout.flush()
        if quiet:
            time.sleep(0.3)
    return 0


def parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    p = argparse.ArgumentParser(
        prog="pipeline",
        description="Kinesis → Lambda → S3/DynamoDB pipeline: run it locally, feed it, watch it.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--port", type=int, default=None, help="port of the embedded stack (default: PORT or 4566)"
        )
        sp.add_argument(
            "--state-dir", default=None, help="where pid, log and position files live (default .state)"
        )

    up = sub.add_parser(
        "up",
        help="start the embedded stack, the ESM runner and a demo burst",
        description="Start the embedded stack (moto server on 127.0.0.1), create "
        "the pipeline's resources, start the local ESM runner, produce a demo "
        "burst and wait until every event is in S3 and DynamoDB.",
    )
    common(up)
    up.add_argument(
        "--events",
        type=int,
        default=int(os.environ.get("EVENTS", 10_000)),
        help="events in the demo burst (default EVENTS or 10000; 0 for none)",
    )
    up.add_argument("--customers", type=int, default=1000, help="distinct customers (1000)")
    up.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for the consumers (240)")
    up.add_argument(
        "--backend",
        choices=("embedded", "localstack"),
        default=os.environ.get("BACKEND", "embedded"),
        help="embedded: start the moto-based stack (default); localstack: use the LocalStack "
        "already running on PORT (docker compose up -d)",
    )
    up.add_argument("--reports", default="reports", help="where the run report goes (reports/)")
    up.set_defaults(func=cmd_up)

    down = sub.add_parser(
        "down",
        help="stop what `up` started",
        description="Stop the ESM runner and the embedded stack, by the pids `up` recorded.",
    )
    common(down)
    down.set_defaults(func=cmd_down)

    st = sub.add_parser(
        "status",
        help="what runs, and per-shard positions",
        description="Show the processes of the local stack, each mapping's "
        "position and each consumer's checkpoint per shard.",
    )
    common(st)
    st.add_argument("--watch", "-w", action="store_true", help="refresh in place until Ctrl-C")
    st.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (2)")
    st.set_defaults(func=cmd_status)

    pr = sub.add_parser(
        "produce",
        help="produce generated events, or the events of a JSON Lines file",
        description="Produce generated order events, or the events of a JSON Lines file (--from), "
        "through the aggregating producer.",
    )
    common(pr)
    from producers.cli import add_arguments

    add_arguments(pr)
    pr.set_defaults(func=cmd_produce)

    esm = sub.add_parser(
        "esm", help="the local event source mapping runner", description="Run or reset the local ESM runner."
    )
    esm_sub = esm.add_subparsers(dest="esm_command", required=True, metavar="ACTION")
    run = esm_sub.add_parser("run", help="run every mapping in the foreground until stopped")
    common(run)
    run.add_argument(
        "--run-disabled",
        action="store_true",
        help="run mappings even when the Lambda API says they are disabled (used with LocalStack)",
    )
    run.set_defaults(func=cmd_esm_run)
    reset = esm_sub.add_parser("reset", help="forget the runner's positions (replays all)")
    common(reset)
    reset.set_defaults(func=cmd_esm_reset)

    lg = sub.add_parser(
        "logs",
        help="show the stack's and the functions' logs",
        description="Print the tail of every log file; --follow keeps going.",
    )
    common(lg)
    lg.add_argument("--follow", "-f", action="store_true", help="keep printing new lines")
    lg.add_argument("--lines", "-n", type=int, default=20, help="lines per file (20)")
    lg.add_argument("--function", help="only the logs whose name contains this (e.g. state-writer)")
    lg.set_defaults(func=cmd_logs)

    from pipeline.observability import report

    rp = sub.add_parser(
        "report",
        help="write a run report (markdown + PNG plots)",
        description="Summarise the run recorded under the state folder: a markdown file with "
        "throughput, lag and latency plots.",
    )
    common(rp)
    report.add_arguments(rp)
    rp.set_defaults(func=report.command)

    from pipeline.replay.cli import register as register_replay

    register_replay(sub, common)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pipeline`` console script."""
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except EndpointConnectionError as exc:
        print(
            f"error: cannot reach {exc.kwargs.get('endpoint_url')}: is the stack up? (`make up`)",
            file=sys.stderr,
        )
        return 2
    except ClientError as exc:
        err = exc.response.get("Error", {})
        print(f"error: AWS said {err.get('Code')}: {err.get('Message')}", file=sys.stderr)
        return 2
    except BotoCoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
