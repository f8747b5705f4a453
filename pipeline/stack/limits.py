"""Kinesis as AWS limits it: a WSGI layer in front of moto's app in the stack server.

moto stores whatever it is sent as fast as it is sent. AWS does not: per shard it takes 1 MiB/s
and 1,000 records/s in and gives 2 MiB/s and 5 GetRecords calls/s out, answering
``ProvisionedThroughputExceededException`` beyond that (per entry in PutRecords), and it rejects
records over 1 MiB, PutRecords calls over 500 entries or 5 MiB, explicit hash keys outside
0..2^128-1 and GetRecords answers over 10 MiB. This layer applies those rules before moto sees
the request, so a producer or consumer that works here meets the same limits in AWS.

>>> app = KinesisLimits(build_app())            # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

MIB = 1024 * 1024
MAX_HASH_KEY = 2**128 - 1
_HASH_KEY = re.compile(r"0|[1-9]\d{0,38}")
_CREDENTIAL = re.compile(r"Credential=([^/]+)/\d+/([^/]+)/")
_TARGET = "Kinesis_20131202."

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
App = Callable[[Environ, StartResponse], Iterable[bytes]]


@dataclass(frozen=True, slots=True)
class Limits:
    """AWS's per-shard quotas (provisioned mode) and request limits."""

    in_bytes_per_second: float = 1 * MIB
    in_records_per_second: float = 1000
    out_bytes_per_second: float = 2 * MIB
    out_calls_per_second: float = 5
    # AWS absorbs short bursts above the rate; a bucket holding one second of quota does the same
    # without letting a sustained overload through.
    burst_seconds: float = 1.0
    max_record_bytes: int = 1 * MIB
    max_entries: int = 500
    max_request_bytes: int = 5 * MIB
    max_get_records: int = 10_000
    max_get_bytes: int = 10 * MIB


@dataclass(slots=True)
class TokenBucket:
    """Tokens refilled at ``rate`` per second up to ``capacity``; may run into debt (reads)."""

    rate: float
    capacity: float
    tokens: float
    stamp: float

    def refill(self, now: float) -> None:
        """Add what accrued since the last call."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, amount: float, now: float) -> bool:
        """Take ``amount`` if the bucket holds it."""
        self.refill(now)
        if self.tokens >= amount:
            self.tokens -= amount
            return True
        return False


@dataclass(slots=True)
class ShardQuota:
    """The four buckets of one shard."""

    in_bytes: TokenBucket
    in_records: TokenBucket
    out_bytes: TokenBucket
    out_calls: TokenBucket


@dataclass(frozen=True, slots=True)
class ShardRange:
    """An open shard's hash key range (inclusive at both ends, as AWS reports it)."""

    shard_id: str
    start: int
    end: int


class LimitError(Exception):
    """A request AWS would refuse: answered with ``code`` and ``message``."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def _b64_len(data: str) -> int:
    """Decoded length of a base64 string without decoding it."""
    return len(data) * 3 // 4 - data[-2:].count("=") if data else 0


def hash_key_of(entry: dict[str, Any]) -> int:
    """The 128-bit hash key that routes an entry: its explicit hash key, else MD5(partition key)."""
    ehk = entry.get("ExplicitHashKey")
    if ehk is not None:
        return int(ehk)
    return int(hashlib.md5(str(entry.get("PartitionKey", "")).encode("utf-8")).hexdigest(), 16)


def validate_entry(entry: dict[str, Any], where: str, limits: Limits) -> int:
    """Raise what AWS raises for a bad record; return its size (data + partition key)."""
    key = entry.get("PartitionKey")
    if not isinstance(key, str) or not 1 <= len(key) <= 256:
        raise LimitError(
            "ValidationException",
            f"1 validation error detected: Value at '{where}partitionKey' failed to satisfy constraint: "
            "Member must have length between 1 and 256",
        )
    ehk = entry.get("ExplicitHashKey")
    if ehk is not None and (
        not isinstance(ehk, str) or not _HASH_KEY.fullmatch(ehk) or int(ehk) > MAX_HASH_KEY
    ):
        raise LimitError(
            "InvalidArgumentException",
            f"Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. "
            f"Specified value was {ehk}",
        )
    size = _b64_len(str(entry.get("Data") or "")) + len(key.encode("utf-8"))
    if size > limits.max_record_bytes:
        raise LimitError(
            "ValidationException",
            f"1 validation error detected: Value at '{where}data' failed to satisfy constraint: "
            f"Member must have length less than or equal to {limits.max_record_bytes} "
            f"(data plus partition key is {size} bytes)",
        )
    return size


class KinesisLimits:
    """WSGI middleware enforcing Kinesis's per-shard throughput and request limits on moto."""

    def __init__(self, app: App, limits: Limits | None = None, clock: Callable[[], float] = time.monotonic):
        self.app = app
        self.limits = limits or Limits()
        self.clock = clock
        self._quotas: dict[tuple[str, str], ShardQuota] = {}
        self._lock = threading.Lock()

    # -- WSGI -----------------------------------------------------------------------------
    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        if not target.startswith(_TARGET):
            return self.app(environ, start_response)
        op = target[len(_TARGET) :]
        handler = {
            "PutRecord": self._put_record,
            "PutRecords": self._put_records,
            "GetRecords": self._get_records,
        }.get(op)
        if handler is None:
            return self.app(environ, start_response)
        raw = _read_body(environ)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return self._forward(environ, raw, start_response)
        try:
            return handler(environ, raw, body, start_response)
        except LimitError as exc:
            return _error(start_response, exc)

    def _forward(self, environ: Environ, raw: bytes, start_response: StartResponse) -> Iterable[bytes]:
        environ["wsgi.input"] = io.BytesIO(raw)
        environ["CONTENT_LENGTH"] = str(len(raw))
        return self.app(environ, start_response)

    def _call(self, environ: Environ, raw: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
        """Run moto on ``raw`` and collect its whole answer."""
        captured: dict[str, Any] = {}

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., Any]:
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        environ["wsgi.input"] = io.BytesIO(raw)
        environ["CONTENT_LENGTH"] = str(len(raw))
        result = self.app(environ, start)
        try:
            out = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close:
                close()
        return captured["status"], captured["headers"], out

    # -- shards and quotas ------------------------------------------------------------------
    def _stream(self, environ: Environ, body: dict[str, Any]) -> Any:
        """moto's stream object for the request, or None when moto should answer."""
        from moto.kinesis.models import kinesis_backends

        arn = body.get("StreamARN")
        if arn:
            _, _, _, region, account, _ = arn.split(":", 5)
            name = arn.split("/", 1)[1]
        else:
            account, region = _account_region(environ)
            name = body.get("StreamName")
        try:
            return kinesis_backends[account][region].describe_stream(stream_arn=None, stream_name=name)
        except Exception:  # unknown stream: moto gives the AWS error
            return None

    @staticmethod
    def _ranges(stream: Any) -> list[ShardRange]:
        return [
            ShardRange(s.shard_id, int(s.starting_hash), int(s.ending_hash))
            for s in list(stream.shards.values())
            if s.is_open
        ]

    def _quota(self, stream_arn: str, shard_id: str, now: float) -> ShardQuota:
        q = self._quotas.get((stream_arn, shard_id))
        if q is None:
            lim, burst = self.limits, self.limits.burst_seconds

            def bucket(rate: float) -> TokenBucket:
                return TokenBucket(rate, rate * burst, rate * burst, now)

            q = ShardQuota(
                bucket(lim.in_bytes_per_second),
                bucket(lim.in_records_per_second),
                bucket(lim.out_bytes_per_second),
                bucket(lim.out_calls_per_second),
            )
            self._quotas[(stream_arn, shard_id)] = q
        return q

    def _admit_put(self, stream: Any, shard_id: str, size: int, now: float) -> bool:
        """Take one record of ``size`` bytes from the shard's write quota, if it has room."""
        q = self._quota(stream.arn, shard_id, now)
        q.in_bytes.refill(now)
        q.in_records.refill(now)
        if q.in_bytes.tokens >= size and q.in_records.tokens >= 1:
            q.in_bytes.tokens -= size
            q.in_records.tokens -= 1
            return True
        return False

    # -- operations -----------------------------------------------------------------------
    def _put_record(
        self, environ: Environ, raw: bytes, body: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        size = validate_entry(body, "", self.limits)
        stream = self._stream(environ, body)
        if stream is None:
            return self._forward(environ, raw, start_response)
        shard = _route(self._ranges(stream), hash_key_of(body))
        if shard is not None:
            with self._lock:
                admitted = self._admit_put(stream, shard.shard_id, size, self.clock())
            if not admitted:
                raise LimitError(
                    "ProvisionedThroughputExceededException", _rate_message(stream, shard.shard_id)
                )
        return self._forward(environ, raw, start_response)

    def _put_records(
        self, environ: Environ, raw: bytes, body: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        entries = body.get("Records") or []
        if len(entries) > self.limits.max_entries:
            raise LimitError(
                "ValidationException",
                "1 validation error detected: Value at 'records' failed to satisfy constraint: "
                f"Member must have length less than or equal to {self.limits.max_entries}",
            )
        sizes = [validate_entry(e, f"records.{i + 1}.member.", self.limits) for i, e in enumerate(entries)]
        if sum(sizes) > self.limits.max_request_bytes:
            raise LimitError("InvalidArgumentException", "Records size exceeds 5 MB limit")
        stream = self._stream(environ, body)
        if stream is None:
            return self._forward(environ, raw, start_response)
        ranges = self._ranges(stream)
        refused: dict[int, str] = {}
        with self._lock:
            now = self.clock()
            for i, (entry, size) in enumerate(zip(entries, sizes, strict=True)):
                shard = _route(ranges, hash_key_of(entry))
                if shard is not None and not self._admit_put(stream, shard.shard_id, size, now):
                    refused[i] = _rate_message(stream, shard.shard_id)
        if not refused:
            return self._forward(environ, raw, start_response)
        accepted = [e for i, e in enumerate(entries) if i not in refused]
        stored: list[dict[str, Any]] = []
        if accepted:
            status, headers, out = self._call(environ, json.dumps({**body, "Records": accepted}).encode())
            if not status.startswith("200"):
                start_response(status, headers)
                return [out]
            stored = list(json.loads(out)["Records"])
        results: list[dict[str, Any]] = []
        it = iter(stored)
        for i in range(len(entries)):
            if i in refused:
                results.append(
                    {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": refused[i]}
                )
            else:
                results.append(next(it))
        failed = sum(1 for r in results if "ErrorCode" in r)
        return _json(
            start_response, {"FailedRecordCount": failed, "Records": results, "EncryptionType": "NONE"}
        )

    def _get_records(
        self, environ: Environ, raw: bytes, body: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        from moto.kinesis.utils import decompose_shard_iterator

        try:
            stream_name, shard_id, last = decompose_shard_iterator(str(body.get("ShardIterator", "")))
            stream = self._stream(environ, {"StreamName": stream_name})
            shard = stream.shards[shard_id] if stream is not None else None
        except Exception:  # not one of moto's iterators: moto gives the AWS error
            return self._forward(environ, raw, start_response)
        if shard is None:
            return self._forward(environ, raw, start_response)
        limit = int(body.get("Limit") or self.limits.max_get_records)
        if not 1 <= limit <= self.limits.max_get_records:
            raise LimitError(
                "InvalidArgumentException",
                f"Limit {limit} is outside 1..{self.limits.max_get_records}: GetRecords returns at most "
                f"{self.limits.max_get_records} records per call",
            )
        with self._lock:
            now = self.clock()
            q = self._quota(stream.arn, shard_id, now)
            q.out_bytes.refill(now)
            # A large read may overdraw the byte bucket; AWS then refuses reads until it refills.
            if q.out_bytes.tokens <= 0 or not q.out_calls.take(1, now):
                raise LimitError("ProvisionedThroughputExceededException", _read_message(stream, shard_id))
        limit = min(limit, self.limits.max_get_records, _fitting(shard, int(last), self.limits.max_get_bytes))
        status, headers, out = self._call(environ, json.dumps({**body, "Limit": max(1, limit)}).encode())
        if status.startswith("200"):
            got = json.loads(out).get("Records", [])
            nbytes = sum(_b64_len(r.get("Data", "")) + len(r.get("PartitionKey", "")) for r in got)
            with self._lock:
                # Charge at the time of the answer: moto's own work must not count as refill time.
                q.out_bytes.refill(self.clock())
                q.out_bytes.tokens -= nbytes
        start_response(status, headers)
        return [out]


def _fitting(shard: Any, after: int, max_bytes: int) -> int:
    """How many records after sequence ``after`` fit in one GetRecords answer of ``max_bytes``."""
    total = n = 0
    for seq, rec in list(shard.records.items()):
        if seq <= after:
            continue
        total += _b64_len(rec.data) + len(rec.partition_key)
        if total > max_bytes and n:
            break
        n += 1
    return max(1, n)


def _route(ranges: list[ShardRange], key: int) -> ShardRange | None:
    for r in ranges:
        if r.start <= key <= r.end:
            return r
    return None


def _rate_message(stream: Any, shard_id: str) -> str:
    return (
        f"Rate exceeded for shard {shard_id} in stream {stream.stream_name} "
        f"under account {stream.account_id}."
    )


def _read_message(stream: Any, shard_id: str) -> str:
    return (
        f"Rate exceeded for Shard - {shard_id} in stream {stream.stream_name} "
        f"under account {stream.account_id}."
    )


def _account_region(environ: Environ) -> tuple[str, str]:
    """Account and region of a request, from its signature's credential scope (as moto does)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.iam.models import get_account_id_from

    m = _CREDENTIAL.search(str(environ.get("HTTP_AUTHORIZATION", "")))
    if not m:
        return DEFAULT_ACCOUNT_ID, "us-east-1"
    return get_account_id_from(m.group(1)), m.group(2)


def _read_body(environ: Environ) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream = environ["wsgi.input"]
    return bytes(stream.read(length) if length else stream.read())


def _json(start_response: StartResponse, payload: dict[str, Any], status: str = "200 OK") -> list[bytes]:
    out = json.dumps(payload).encode()
    start_response(
        status, [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(out)))]
    )
    return [out]


def _error(start_response: StartResponse, exc: LimitError) -> list[bytes]:
    out = json.dumps({"__type": exc.code, "message": exc.message}).encode()
    start_response(
        f"{exc.status} Bad Request",
        [
            ("Content-Type", "application/x-amz-json-1.1"),
            ("Content-Length", str(len(out))),
            ("x-amzn-ErrorType", exc.code),
        ],
    )
    return [out]
