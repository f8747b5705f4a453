"""``pipeline replay``: reprocess a range of history from the stream, the raw archive or an
on-failure queue, into the consumers (locally or deployed) or back into a stream."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TextIO

from pipeline.settings import Settings

DESCRIPTION = """\
Reprocess any range of history, safely.

Reads a range of the stream (by shard, sequence number or arrival time) through the same decoding
path as the consumers, taking from the raw archive in S3 whatever the stream no longer holds; or
reads the batches an on-failure queue names, deleting each message only after its batch went
through. Delivers to the consumers' own handlers (run locally, or a deployed function) or back
into a stream (re-aggregated, partition keys kept).

By default a replay is idempotent: what a consumer already processed stays as it is. With
--reprocess the consumers write a new output version (lake prefix, state table, checkpoints)
and leave the current one untouched. A cursor in the state folder makes every run resumable:
after Ctrl-C or an error, run the same command again."""

EPILOG = """\
examples:
  # re-deliver an hour to both consumers (a no-op for what they already processed)
  pipeline replay --from-timestamp 2026-11-26T22:00:00Z --to-timestamp 2026-11-26T23:00:00Z

  # bug-fix backfill into a new output version: events/v2, pipeline-customer-state-v2
  pipeline replay --reprocess --output-version v2 --consumer state-writer

  # one shard by sequence numbers, archive only (the stream's retention has passed)
  pipeline replay --source archive --shard shardId-000000000001 --from-sequence 100 --to-sequence 900

  # the lake writer's on-failure queue: replay each batch, then delete its message
  pipeline replay --source dlq --consumer lake-writer

  # into another stream, re-aggregated under the original partition keys, 500 records/s
  pipeline replay --to-stream pipeline-events-copy --rate 500

  # say what would be read and written, touch nothing
  pipeline replay --reprocess --output-version v2 --dry-run

docs/replay.md explains reprocessing and how readers switch to a new version."""


def _time(text: str) -> float:
    from pipeline.replay.ranges import parse_time

    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _sequence(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a sequence number (decimal digits)")
    return int(text)


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return n


def _rate(text: str) -> float:
    try:
        r = float(text)
    except ValueError:
        r = -1.0
    if r < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate (records per second, 0 for no limit)")
    return r


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``replay`` to the ``pipeline`` CLI's subcommands."""
    from pipeline.stack.bootstrap import CONSUMERS

    names = [c.name for c in CONSUMERS]
    rp = sub.add_parser(
        "replay",
        help="reprocess a range of history (stream, raw archive, on-failure queue)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(rp)
    src = rp.add_argument_group("what to read")
    src.add_argument(
        "--source",
        choices=("auto", "stream", "archive", "dlq"),
        default="auto",
        help="auto (default): the stream, and the raw archive where the stream no longer has the range; "
        "stream or archive: only that; dlq: the batches named by the consumers' on-failure queues",
    )
    src.add_argument("--stream", metavar="NAME", help="stream to read (default PIPELINE_STREAM)")
    src.add_argument(
        "--shard", action="append", metavar="ID", help="shard to replay (repeatable; default all)"
    )
    src.add_argument("--from-sequence", type=_sequence, metavar="N", help="first sequence number (inclusive)")
    src.add_argument("--to-sequence", type=_sequence, metavar="N", help="last sequence number (inclusive)")
    src.add_argument(
        "--from-timestamp",
        type=_time,
        metavar="TIME",
        help="first arrival time, ISO 8601 (2026-11-26T22:00:00Z) or epoch seconds",
    )
    src.add_argument("--to-timestamp", type=_time, metavar="TIME", help="last arrival time (inclusive)")
    src.add_argument(
        "--queue", metavar="NAME", help="on-failure queue for --source dlq (default: each consumer's)"
    )
    tgt = rp.add_argument_group("where it goes")
    tgt.add_argument(
        "--consumer",
        action="append",
        choices=names,
        help=f"consumer whose handler runs locally (repeatable; default all: {', '.join(names)})",
    )
    tgt.add_argument(
        "--function",
        action="append",
        metavar="NAME",
        help="invoke this deployed function instead of running a handler locally (repeatable)",
    )
    tgt.add_argument(
        "--to-stream", metavar="NAME", help="put the records into this stream instead of a consumer"
    )
    mode = rp.add_argument_group("mode")
    mode.add_argument(
        "--reprocess",
        action="store_true",
        help="write a new output version (needs --output-version) and leave the current one untouched",
    )
    mode.add_argument(
        "--output-version",
        metavar="NAME",
        help="name of the new version, e.g. v2: lake prefix events/NAME, state table <table>-NAME, "
        "checkpoints <consumer>-NAME",
    )
    mode.add_argument("--lake-prefix", metavar="PREFIX", help="lake prefix of the new version")
    mode.add_argument("--state-table", metavar="TABLE", help="state table of the new version")
    mode.add_argument(
        "--dry-run", action="store_true", help="say what would be read and written; touch nothing"
    )
    run = rp.add_argument_group("running")
    run.add_argument("--rate", type=_rate, default=0.0, metavar="N", help="records per second (0: no limit)")
    run.add_argument(
        "--batch-size", type=_positive, default=1000, metavar="N", help="records per invocation (1000)"
    )
    run.add_argument(
        "--parallel",
        type=_positive,
        default=1,
        metavar="N",
        help="shards replayed at once into consumers, each with its own worker (1; order always holds "
        "within a shard; more helps against AWS, not on a small machine running the local stack)",
    )
    run.add_argument(
        "--restart", action="store_true", help="ignore the saved cursor and start the range again"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    rp.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    """Run ``pipeline replay`` with parsed arguments."""
    from pipeline.cli import settings_from_args

    return run(args, settings_from_args(args))


def _check(args: argparse.Namespace) -> None:
    from pipeline.replay.errors import ReplayError

    if (
        args.from_sequence is not None
        and args.to_sequence is not None
        and args.from_sequence > args.to_sequence
    ):
        raise ReplayError(f"--from-sequence {args.from_sequence} is after --to-sequence {args.to_sequence}")
    if (
        args.from_timestamp is not None
        and args.to_timestamp is not None
        and args.from_timestamp > args.to_timestamp
    ):
        raise ReplayError("--from-timestamp is after --to-timestamp")
    if args.reprocess and not args.output_version:
        raise ReplayError("--reprocess needs --output-version NAME (e.g. v2): where the new outputs go")
    if not args.reprocess and (args.output_version or args.lake_prefix or args.state_table):
        raise ReplayError("--output-version, --lake-prefix and --state-table only apply with --reprocess")
    if args.to_stream and (args.consumer or args.function or args.reprocess):
        raise ReplayError("--to-stream replaces the consumers: drop --consumer, --function and --reprocess")
    if args.function and args.reprocess:
        raise ReplayError(
            "--reprocess runs the handlers locally with the new version's settings; drop --function "
            "(or deploy a function with them and invoke that without --reprocess)"
        )
    if args.source == "dlq":
        if args.to_stream:
            raise ReplayError("on-failure batches go back to their consumer; drop --to-stream")
        if args.function and not args.queue:
            raise ReplayError("with --function, name the on-failure queue with --queue")
        ranged = (args.from_sequence, args.to_sequence, args.from_timestamp, args.to_timestamp)
        if args.shard or any(v is not None for v in ranged):
            raise ReplayError("--source dlq replays the ranges its messages name; drop --shard and the range")


def run(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    """Plan and run a replay; print the plan (dry run) or the summary to ``out``."""
    from pipeline import aws
    from pipeline.replay.ranges import Range
    from pipeline.replay.versions import output_version
    from pipeline.stack.bootstrap import CONSUMERS

    out = out or sys.stdout
    _check(args)
    consumers = list(dict.fromkeys(args.consumer or [c.name for c in CONSUMERS]))
    version = (
        output_version(settings, args.output_version, args.lake_prefix, args.state_table)
        if args.reprocess
        else None
    )
    rng = Range(args.from_sequence, args.to_sequence, args.from_timestamp, args.to_timestamp)
    clients = {name: aws.client(name, settings) for name in ("kinesis", "s3", "dynamodb", "lambda", "sqs")}
    if args.source == "dlq":
        return _run_dlq(args, settings, consumers, version, clients, out)
    return _run_history(args, settings, consumers, version, rng, clients, out)


def _progress(args: argparse.Namespace) -> Any:
    from pipeline.replay.progress import Progress

    return Progress(enabled=False if args.no_progress else None)


def _prepare_version(version: Any, settings: Settings, ddb: Any, out: TextIO) -> None:
    from pipeline.replay.versions import ensure_table_like

    if ensure_table_like(ddb, settings.state_table, version.state_table):
        print(f"created state table {version.state_table} (keys of {settings.state_table})", file=out)


def _run_history(
    args: argparse.Namespace,
    settings: Settings,
    consumers: list[str],
    version: Any,
    rng: Any,
    clients: dict[str, Any],
    out: TextIO,
) -> int:
    from pipeline.replay.cursor import Cursor
    from pipeline.replay.errors import ReplayError
    from pipeline.replay.runner import Ledger, Replay
    from pipeline.replay.sources import ArchiveReader, History, StreamReader
    from pipeline.replay.targets import DeployedFunction, StreamTarget, Target, local_consumers

    stream_name = args.stream or settings.stream_name
    stream = StreamReader(clients["kinesis"], stream_name) if args.source in ("auto", "stream") else None
    archive = (
        ArchiveReader(clients["s3"], settings.bucket, settings.raw_prefix)
        if args.source in ("auto", "archive")
        else None
    )
    notes = []
    probe = StreamReader(clients["kinesis"], stream_name)
    try:
        stream_arn = probe.arn()
    except ReplayError:
        if args.source == "stream":
            raise
        # Past retention the stream may be gone altogether; the archive still has the history.
        stream, stream_arn = None, f"arn:aws:kinesis:{settings.region}:000000000000:stream/{stream_name}"
        notes.append(f"stream {stream_name} does not exist: reading the archive only")
    history = History(stream, archive)
    shard_ids = history.shard_ids(args.shard)
    sources = " and ".join(
        s for s in (f"stream {stream_name}" if stream else "", archive.url if archive else "") if s
    )
    command = {
        "source": args.source,
        "stream": stream_name,
        "shards": shard_ids if args.shard else "all",
        "range": asdict(rng),
        "consumers": None if (args.to_stream or args.function) else consumers,
        "functions": args.function,
        "to_stream": args.to_stream,
        "version": asdict(version) if version else None,
    }
    cursor = Cursor.open(settings.state_dir, command, restart=args.restart)
    targets: list[Target]
    if args.to_stream:
        targets = [StreamTarget(settings, args.to_stream)]
    elif args.function:
        targets = [DeployedFunction(clients["lambda"], f, stream_arn, settings.region) for f in args.function]
    else:
        overrides = {c: version.environment(c) for c in consumers} if version else {}
        targets = list(
            local_consumers(
                settings,
                clients["lambda"],
                consumers,
                overrides,
                stream_arn,
                settings.state_dir / "logs",
                concurrency=min(args.parallel, max(len(shard_ids), 1)),
            )
        )
    for n in notes:
        print(f"note: {n}", file=out)
    print(f"replay {rng.describe()} of {len(shard_ids)} shard(s) from {sources}", file=out)
    if cursor.complete and not args.dry_run:
        print(
            f"nothing to do: this replay finished before (cursor {cursor.path}); "
            f"add --restart to run it again",
            file=out,
        )
        return 0
    if args.dry_run:
        _print_plan(history, shard_ids, rng, cursor, targets, version, settings, clients["dynamodb"], out)
        return 0
    if version is not None:
        _prepare_version(version, settings, clients["dynamodb"], out)
    if cursor.resumed:
        print(f"resuming from cursor {cursor.path}", file=out)
    replay = Replay(
        args.batch_size,
        args.rate,
        _progress(args),
        Ledger(clients["dynamodb"], settings.checkpoint_table),
        # Into a stream, shards go one at a time: they share one producer and its flushes.
        parallel=1 if args.to_stream else args.parallel,
    )
    started = time.monotonic()
    try:
        totals = replay.history(history, shard_ids, rng, targets, cursor)
    except KeyboardInterrupt:
        replay.close()
        print(
            f"interrupted: progress saved in {cursor.path}; run the same command to continue",
            file=sys.stderr,
        )
        return 130
    finally:
        for t in targets:
            t.close()
        replay.close()
    elapsed = time.monotonic() - started
    rows = [
        (
            "read",
            f"{totals.records:,} Kinesis records ({totals.from_stream:,} from the stream, "
            f"{totals.from_archive:,} from the archive) of {totals.shards} shard(s)",
        ),
        ("delivered", f"{totals.batches:,} batches to {', '.join(t.name for t in targets)}"),
    ]
    rows += _consumer_rows(replay, targets)
    rows += [
        ("elapsed", _speed(elapsed, totals.records, replay, targets)),
        ("cursor", f"{cursor.path} ({'complete' if cursor.complete else 'the same command continues'})"),
    ]
    if version is not None:
        rows.append(("new version", _version_line(version)))
    rows += [("warning", w) for w in totals.warnings]
    _print_summary(rows, out)
    return 0


def _speed(elapsed: float, records: int, replay: Any, targets: list[Any]) -> str:
    """Elapsed time, Kinesis records/s and user records (events)/s."""
    # Aggregated Kinesis records hold many events; the consumers' counters say how many.
    events = max(
        [c["records_in"] for c in replay.ledger.deltas().values()] if replay.ledger else [], default=0
    )
    events = max([events] + [getattr(t, "user_records", 0) for t in targets])
    line = f"{elapsed:,.1f} s ({records / max(elapsed, 1e-9):,.0f} Kinesis records/s"
    if events:
        line += f", {events / max(elapsed, 1e-9):,.0f} events/s"
    return line + ")"


def _version_line(version: Any) -> str:
    return (
        f"lake {version.lake_prefix}/, state table {version.state_table}, "
        f"checkpoints <consumer>-{version.name}; docs/replay.md says how readers switch over"
    )


def _consumer_rows(replay: Any, targets: list[Any]) -> list[tuple[str, str]]:
    rows = []
    if replay.ledger is not None:
        for label, c in sorted(replay.ledger.deltas().items()):
            rows.append(
                (
                    label,
                    f"{c['written']:,} events written, {c['duplicates_delivery']:,} already processed "
                    f"(skipped), {c['duplicates_event']:,} duplicate event ids, "
                    f"{c['quarantined']:,} quarantined",
                )
            )
    for t in targets:
        if hasattr(t, "user_records"):
            rows.append(
                (t.name, f"{t.user_records:,} user records put, {t.poison:,} corrupt records left out")
            )
    return rows


def _print_summary(rows: list[tuple[str, str]], out: TextIO) -> None:
    w = max(len(k) for k, _ in rows)
    print("\nreplay summary", file=out)
    for k, v in rows:
        print(f"  {k:<{w}}  {v}", file=out)


def _print_plan(
    history: Any,
    shard_ids: list[str],
    rng: Any,
    cursor: Any,
    targets: list[Any],
    version: Any,
    settings: Settings,
    ddb: Any,
    out: TextIO,
) -> None:
    from pipeline.replay.versions import table_exists

    print("dry run: nothing is written, no cursor is saved", file=out)
    print("would read:", file=out)
    for shard_id in shard_ids:
        if shard_id in cursor.finished:
            print(f"  {shard_id}: already replayed (cursor {cursor.path})", file=out)
            continue
        after = cursor.after(shard_id)
        plan = history.plan(shard_id, rng, after)
        resume = f" (resuming after sequence {after})" if after is not None else ""
        print(f"  {plan.describe()}{resume}", file=out)
        if plan.gap:
            print(f"    warning: nothing of the range before sequence {plan.stream_start} is left", file=out)
    print("would write:", file=out)
    for t in targets:
        print(f"  {t.describe()}", file=out)
    if version is not None and not table_exists(ddb, version.state_table):
        print(
            f"  would create state table {version.state_table} with the keys of {settings.state_table}",
            file=out,
        )
    if version is None and not any(hasattr(t, "user_records") for t in targets):
        print("  (records the consumers already processed are skipped by their checkpoints)", file=out)


def _run_dlq(
    args: argparse.Namespace,
    settings: Settings,
    consumers: list[str],
    version: Any,
    clients: dict[str, Any],
    out: TextIO,
) -> int:
    from consumers.core.checkpoint import CheckpointStore
    from pipeline.codecs.positions import encode_position
    from pipeline.replay.errors import ReplayError
    from pipeline.replay.runner import Ledger, Replay
    from pipeline.replay.sources import ArchiveReader, DeadLetters, FailedBatch, History, StreamReader
    from pipeline.replay.targets import DeployedFunction, Target, local_consumers
    from pipeline.stack.bootstrap import dlq_name

    archive = ArchiveReader(clients["s3"], settings.bucket, settings.raw_prefix)
    histories: dict[str, History] = {}

    def history_for(batch: FailedBatch) -> History:
        name = batch.stream_name or settings.stream_name
        if name not in histories:
            reader = StreamReader(clients["kinesis"], name)
            try:
                reader.arn()
            except ReplayError:
                histories[name] = History(None, archive)  # the stream is gone; the archive is not
            else:
                histories[name] = History(reader, archive)
        return histories[name]

    jobs: list[tuple[str, Callable[[FailedBatch], list[Target]]]] = []
    if args.function:

        def deployed(batch: FailedBatch) -> list[Target]:
            targets: list[Target] = []
            for f in args.function:
                t = DeployedFunction(clients["lambda"], f, batch.stream_arn, settings.region)
                cp = CheckpointStore(clients["dynamodb"], settings.checkpoint_table, t.namespace).load(
                    batch.shard_id
                )
                # Its checkpoint already passed the batch: the function would skip it as done.
                if cp.position is not None and cp.position >= encode_position(batch.start):
                    raise ReplayError(
                        f"{f}'s checkpoint on {batch.shard_id} is past sequence {batch.start}, so the "
                        f"deployed function would skip this batch as processed; replay it locally "
                        f"(without --function)"
                    )
                targets.append(t)
            return targets

        jobs.append((args.queue, deployed))
    else:
        for c in consumers:

            def local(batch: FailedBatch, c: str = c) -> list[Target]:
                # The ESM moved past the failed batch, and so did the consumer's checkpoint: the
                # batch replays under a checkpoint namespace of its own (deterministic, so a retry
                # of this message is deduplicated), unless it goes into a new output version.
                env = version.environment(c) if version else {"PIPELINE_CONSUMER": f"{c}-dlq-{batch.start}"}
                return list(
                    local_consumers(
                        settings,
                        clients["lambda"],
                        [c],
                        {c: env},
                        batch.stream_arn,
                        settings.state_dir / "logs",
                    )
                )

            jobs.append((args.queue or dlq_name(settings, c), local))

    queues = [(DeadLetters(clients["sqs"], q), make) for q, make in jobs]
    if args.dry_run:
        print("dry run: nothing is written, no message is received or deleted", file=out)
        for q, _ in queues:
            print(
                f"  queue {q.queue_name}: about {q.count()} message(s); each batch would be read from the "
                f"stream (or the archive {archive.url}) and deleted after it went through",
                file=out,
            )
        return 0
    if version is not None:
        _prepare_version(version, settings, clients["dynamodb"], out)
    replay = Replay(
        args.batch_size, args.rate, _progress(args), Ledger(clients["dynamodb"], settings.checkpoint_table)
    )
    started = time.monotonic()
    try:
        for q, make in queues:
            print(f"replay on-failure queue {q.queue_name} (about {q.count()} messages)", file=out)
            replay.dead_letters(q, history_for, make)
    except KeyboardInterrupt:
        replay.close()
        print(
            "interrupted: replayed messages are deleted; run the same command for the rest", file=sys.stderr
        )
        return 130
    finally:
        replay.close()
    totals = replay.totals
    elapsed = time.monotonic() - started
    rows = [
        ("messages", f"{totals.messages_replayed:,} replayed and deleted, {len(totals.messages_kept)} kept"),
        (
            "read",
            f"{totals.records:,} Kinesis records ({totals.from_stream:,} from the stream, "
            f"{totals.from_archive:,} from the archive)",
        ),
    ]
    rows += _consumer_rows(replay, [])
    rows.append(("elapsed", _speed(elapsed, totals.records, replay, [])))
    rows += [("kept", k) for k in totals.messages_kept]
    _print_summary(rows, out)
    return 0
