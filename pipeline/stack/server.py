"""The embedded AWS endpoint: moto's server app, served on loopback, with moto's own Lambda
execution switched off (our ESM runner invokes the handlers) and Kinesis limited as AWS limits it
(``pipeline.stack.limits``).

Run as ``python -m pipeline.stack.server --port 4566`` (``--no-limits``, or
``PIPELINE_STACK_LIMITS=off``, serves moto unthrottled).
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import sys
import threading
from collections import OrderedDict
from typing import Any

from pipeline.stack.dynamodb import FastWrites, patch_moto_dynamodb
from pipeline.stack.limits import KinesisLimits


def limits_enabled(env: dict[str, str] | None = None) -> bool:
    """Limits are on unless ``PIPELINE_STACK_LIMITS`` says off."""
    value = (os.environ if env is None else env).get("PIPELINE_STACK_LIMITS", "on").strip().lower()
    return value not in ("off", "0", "false", "no")


def _patch_moto_kinesis() -> None:
    """Make moto's shards behave as AWS's where the pipeline depends on it."""
    from moto.kinesis.exceptions import InvalidArgumentError
    from moto.kinesis.models import KinesisBackend, Stream
    from moto.kinesis.utils import compose_shard_iterator, decompose_shard_iterator

    if getattr(Stream, "_pipeline_patched", False):
        return
    original_split = Stream.split_shard
    original_merge = Stream.merge_shards
    original_get_records = KinesisBackend.get_records

    def get_shard_for_key(self: Any, partition_key: str, explicit_hash_key: str) -> Any:
        # Hash key ranges are inclusive at both ends (moto compared the end exclusively, so a key
        # equal to a shard's EndingHashKey, such as 2^128-1, matched no shard), and only open
        # shards take new records.
        import hashlib

        if not isinstance(partition_key, str) or not 1 <= len(partition_key) <= 256:
            raise InvalidArgumentError("partition_key")
        if explicit_hash_key:
            key = int(explicit_hash_key)
            if not 0 <= key < 2**128:
                raise InvalidArgumentError("explicit_hash_key")
        else:
            key = int(hashlib.md5(partition_key.encode("utf-8")).hexdigest(), 16)
        for shard in self.shards.values():
            if shard.is_open and shard.starting_hash <= key <= shard.ending_hash:
                return shard
        return None

    def split_shard(self: Any, shard_to_split: str, new_starting_hash_key: str) -> None:
        # AWS keeps a parent's records in the (closed) parent until they expire; moto moved them
        # into the children under new sequence numbers, which hides the parents-first order.
        parent = self.shards[shard_to_split]
        kept, before = parent.records, set(self.shards)
        original_split(self, shard_to_split, new_starting_hash_key)
        parent.records = kept
        for sid in set(self.shards) - before:
            self.shards[sid].records = OrderedDict()

    def merge_shards(self: Any, shard_to_merge: str, adjacent_shard_to_merge: str) -> None:
        before = set(self.shards)
        original_merge(self, shard_to_merge, adjacent_shard_to_merge)
        for sid in set(self.shards) - before:
            self.shards[sid].records = OrderedDict()

    def get_records(self: Any, stream_arn: str | None, shard_iterator: str, limit: int | None) -> Any:
        # A closed shard read to its end answers without a next iterator, as AWS does; that is
        # how readers know a parent is drained and its children may start.
        next_iterator, records, behind = original_get_records(self, stream_arn, shard_iterator, limit)
        stream_name, shard_id, _ = decompose_shard_iterator(next_iterator)
        stream = self.describe_stream(stream_arn=stream_arn, stream_name=stream_name)
        shard = stream.get_shard(shard_id)
        last = int(decompose_shard_iterator(next_iterator)[2])
        if not shard.is_open and last >= shard.get_max_sequence_number():
            return None, records, behind
        return compose_shard_iterator(stream_name, shard, last), records, behind

    from moto.awslambda.models import EventSourceMapping

    original_configuration = EventSourceMapping.get_configuration

    def get_configuration(self: Any) -> dict[str, Any]:
        # moto stores an AT_TIMESTAMP mapping's StartingPositionTimestamp but never returns it.
        conf = dict(original_configuration(self))
        if getattr(self, "starting_position_timestamp", None) is not None:
            conf["StartingPositionTimestamp"] = self.starting_position_timestamp
        return conf

    EventSourceMapping.get_configuration = get_configuration  # type: ignore[method-assign]
    Stream.get_shard_for_key = get_shard_for_key  # type: ignore[method-assign]
    Stream.split_shard = split_shard  # type: ignore[method-assign]
    Stream.merge_shards = merge_shards  # type: ignore[method-assign]
    KinesisBackend.get_records = get_records  # type: ignore[method-assign]
    # moto numbers a shard's records as "last + 1" without a lock, so two concurrent PutRecords
    # to one shard (the server is threaded) could get one sequence number and one record would
    # overwrite the other. Kinesis never loses an acknowledged record: serialise the changes.
    lock = threading.RLock()
    for name in (
        "put_record",
        "put_records",
        "get_records",
        "get_shard_iterator",
        "split_shard",
        "merge_shards",
        "update_shard_count",
    ):
        setattr(KinesisBackend, name, _locked(lock, getattr(KinesisBackend, name)))
    Stream._pipeline_patched = True  # type: ignore[attr-defined]


def _locked(lock: Any, fn: Any) -> Any:
    """``fn`` run under ``lock``."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return fn(*args, **kwargs)

    return call


def build_app(limits: bool = True) -> Any:
    """The WSGI app: every AWS API moto serves, without moto invoking functions itself, with
    Kinesis's limits in front unless ``limits`` is False."""
    from moto.awslambda.models import LambdaBackend
    from moto.core.config import default_user_config
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    default_user_config["lambda"]["use_docker"] = False
    default_user_config["batch"]["use_docker"] = False

    # moto would build and "invoke" a Lambda event for every record put to a stream that has a
    # mapping; the local ESM runner does that job, with AWS semantics, so skip the per-put work.
    def _no_kinesis_push(self: Any, *args: Any, **kwargs: Any) -> None:
        return None

    LambdaBackend.send_kinesis_message = _no_kinesis_push  # type: ignore[method-assign]
    _patch_moto_kinesis()
    patch_moto_dynamodb()
    app: Any = DomainDispatcherApplication(create_backend_app)
    from pipeline.stack.faults import ThrottleInjector, parse

    # Outermost, so injected throttles cost nothing downstream; off unless asked for.
    if os.environ.get("PIPELINE_STACK_FAST_WRITES", "on").strip().lower() not in ("off", "0", "false", "no"):
        app = FastWrites(app)
    inner = KinesisLimits(app) if limits else app
    return ThrottleInjector(inner, parse(os.environ.get("PIPELINE_STACK_FAULTS")))


class Server:
    """A stack server in a thread of this process (tests) — ``serve`` runs one in the foreground."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, limits: bool = True) -> None:
        from werkzeug.serving import make_server

        from pipeline.stack.http import KeepAliveHandler

        self._server = make_server(
            host, port, build_app(limits), threaded=True, request_handler=KeepAliveHandler
        )
        host_, port_ = self._server.server_address[:2]
        self.host = host_.decode() if isinstance(host_, bytes) else str(host_)
        self.port = int(port_)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint_url(self) -> str:
        """``http://host:port`` of the server."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Server:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop serving and join the thread."""
        self._server.shutdown()
        if self._thread.is_alive():
            self._thread.join()


def main(argv: list[str] | None = None) -> int:
    """Serve the embedded stack in the foreground."""
    parser = argparse.ArgumentParser(description="Serve the embedded AWS stack on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    parser.add_argument(
        "--no-limits",
        action="store_true",
        help="serve Kinesis without AWS's per-shard limits (also PIPELINE_STACK_LIMITS=off)",
    )
    args = parser.parse_args(argv)
    limits = limits_enabled() and not args.no_limits
    try:
        server = Server(args.host, args.port, limits=limits)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    # moto keeps every stream record and table item as Python objects, so the collector's full
    # passes over them grew with the data held; the server allocates in bursts per request and its
    # state is long-lived: collect young objects less often and leave the startup heap out.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    state = "on" if limits else "off"
    print(f"embedded stack listening on {server.endpoint_url} (Kinesis limits {state})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
