"""Where replayed records go: a consumer's own handler run locally, a deployed function, a stream.

Consumer targets get Lambda events of the exact AWS shape (``pipeline.esm.events.lambda_record``),
so the consumer decodes, deduplicates and writes them as it does in production. The local target
runs the handler module in a Lambda-like worker process (``pipeline.esm.runtime``) with the
function's environment variables, which is how a reprocess points it at a new output version.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import ClientError

from pipeline.codecs import kpl
from pipeline.errors import PipelineError, PoisonRecord
from pipeline.esm.events import lambda_record
from pipeline.esm.runtime import FunctionRuntime, FunctionSpec
from pipeline.replay.errors import ReplayError
from pipeline.replay.records import RawRecord
from pipeline.settings import Settings
from pipeline.stack.bootstrap import CONSUMERS, function_name

RESUME_HINT = "fix the cause and run the same command again: the replay resumes where it stopped"


class Target(Protocol):
    """Something a batch of one shard's records is delivered to."""

    name: str

    def describe(self) -> str:
        """One line for --dry-run and the summary."""
        ...

    def deliver(self, shard_id: str, records: Sequence[RawRecord]) -> None:
        """Deliver the batch completely, or raise ``ReplayError``."""
        ...

    def close(self) -> None:
        """Release workers and clients."""
        ...


def handler_of(consumer: str) -> str:
    """The handler (``module.function``) of a consumer of this repository."""
    for c in CONSUMERS:
        if c.name == consumer:
            return c.handler
    names = ", ".join(c.name for c in CONSUMERS)
    raise ReplayError(f"unknown consumer {consumer!r}; choose one of {names}")


def first_failure(ok: bool, payload: Any, sequence_numbers: Sequence[str]) -> int | None:
    """None when the batch succeeded, else the index of the first record to deliver again.

    Reads the partial batch response the way the ESM does: a function error or an unknown
    ``itemIdentifier`` fails the whole batch.

    >>> first_failure(True, {"batchItemFailures": [{"itemIdentifier": "7"}]}, ["5", "7", "9"])
    1
    """
    if not ok:
        return 0
    if not isinstance(payload, dict):
        return None if payload is None else 0
    failures = payload.get("batchItemFailures")
    if not failures:
        return None
    if not isinstance(failures, list):
        return 0
    index = {s: i for i, s in enumerate(sequence_numbers)}
    found = []
    for f in failures:
        ident = f.get("itemIdentifier") if isinstance(f, dict) else None
        if ident not in index:
            return 0
        found.append(index[ident])
    return min(found)


class _ConsumerTarget:
    """Lambda events of one shard, with the ESM's retry of whatever the response reports failed."""

    name = ""
    attempts = 3

    def __init__(self, stream_arn: str, region: str, role_arn: str) -> None:
        self.stream_arn = stream_arn
        self.region = region
        self.role_arn = role_arn
        self.invocations = 0
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        """Stop retrying: the replay is being interrupted."""
        self.cancelled.set()

    def _call(self, event: dict[str, Any]) -> tuple[bool, Any, dict[str, Any] | None]:
        raise NotImplementedError

    def _where(self) -> str:
        return ""

    def deliver(self, shard_id: str, records: Sequence[RawRecord]) -> None:
        """Invoke until every record succeeded, at most ``attempts`` times per failing record."""
        pending = list(records)
        tries = 0
        while pending:
            event = {
                "Records": [
                    lambda_record(r.as_get_records(), shard_id, self.stream_arn, self.region, self.role_arn)
                    for r in pending
                ]
            }
            ok, payload, error = self._call(event)
            self.invocations += 1
            failed = first_failure(ok, payload, [r.sequence_number for r in pending])
            if failed is None:
                return
            tries = 1 if failed > 0 else tries + 1
            pending = pending[failed:]
            if tries >= self.attempts or self.cancelled.is_set():
                what = (
                    f"{error.get('errorType')}: {error.get('errorMessage')}"
                    if error
                    else "it reported the record as failed"
                )
                raise ReplayError(
                    f"{self.name} failed {tries} times on {shard_id} at sequence "
                    f"{pending[0].sequence_number} ({what}){self._where()}; {RESUME_HINT}"
                )
            time.sleep(0.2 * tries)


def consumer_environment(
    settings: Settings, consumer: str, deployed: Mapping[str, str] | None, overrides: Mapping[str, str]
) -> dict[str, str]:
    """The variables a consumer runs with: settings, then the deployed function's, then overrides."""
    env = {
        **settings.function_env(consumer),
        "PIPELINE_LAKE_PREFIX": settings.lake_prefix,
        "PIPELINE_RAW_PREFIX": settings.raw_prefix,
        "PIPELINE_QUARANTINE_PREFIX": settings.quarantine_prefix,
        "PIPELINE_DLQ_PREFIX": settings.dlq_prefix,
        **(deployed or {}),
        **overrides,
    }
    # What Lambda's runtime adds; against the local stack also its endpoint (never real AWS).
    env.setdefault("AWS_REGION", settings.region)
    env.setdefault("AWS_DEFAULT_REGION", settings.region)
    if settings.endpoint_url:
        env.update(
            AWS_ENDPOINT_URL=settings.endpoint_url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_SESSION_TOKEN="testing",
        )
    return env


def deployed_configuration(lam: Any, name: str) -> dict[str, Any] | None:
    """A function's configuration from the Lambda API, or None where it is not deployed or readable."""
    try:
        return dict(lam.get_function_configuration(FunctionName=name))
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("ResourceNotFoundException", "AccessDeniedException"):
            return None
        raise


class LocalConsumer(_ConsumerTarget):
    """A consumer's handler module run in a local Lambda-like worker process."""

    def __init__(
        self,
        consumer: str,
        environment: Mapping[str, str],
        stream_arn: str,
        region: str,
        role_arn: str = "",
        log_dir: Path | None = None,
        timeout: int = 300,
        concurrency: int = 1,
        handler: str | None = None,
    ) -> None:
        super().__init__(stream_arn, region, role_arn)
        self.concurrency = max(1, concurrency)
        self._lock = threading.Lock()
        self.consumer = consumer
        self.namespace = environment.get("PIPELINE_CONSUMER", consumer)
        self.name = consumer if self.namespace == consumer else f"{consumer} as {self.namespace}"
        self.environment = dict(environment)
        self.handler = handler or handler_of(consumer)
        self.log_path = (log_dir / f"replay-{self.namespace}.log") if log_dir else None
        self.timeout = timeout
        self._runtime: FunctionRuntime | None = None

    @property
    def runtime(self) -> FunctionRuntime:
        """The worker pool, started on first use (a dry run never starts it)."""
        with self._lock:
            return self._start()

    def _start(self) -> FunctionRuntime:
        if self._runtime is None:
            if self.log_path:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
            spec = FunctionSpec(
                name=f"replay-{self.namespace}",
                arn=f"arn:aws:lambda:{self.region}:000000000000:function:replay-{self.namespace}",
                handler=self.handler,
                environment=self.environment,
                timeout=self.timeout,
                memory=1024,
                log_path=self.log_path,
            )
            self._runtime = FunctionRuntime(spec, concurrency=self.concurrency)
        return self._runtime

    def _call(self, event: dict[str, Any]) -> tuple[bool, Any, dict[str, Any] | None]:
        result = self.runtime.invoke(event)
        return result.ok, result.payload, result.error

    def _where(self) -> str:
        return f"; its log is {self.log_path}" if self.log_path else ""

    def describe(self) -> str:
        """What this target writes."""
        e = self.environment
        return (
            f"{self.consumer}: handler {self.handler} run locally, checkpoints {self.namespace!r} "
            f"in {e.get('PIPELINE_CHECKPOINT_TABLE')}, lake s3://{e.get('PIPELINE_BUCKET')}/"
            f"{e.get('PIPELINE_LAKE_PREFIX')}/, state table {e.get('PIPELINE_STATE_TABLE')}"
        )

    def close(self) -> None:
        """Stop the worker."""
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None


class DeployedFunction(_ConsumerTarget):
    """A deployed consumer function, invoked synchronously with the same events the ESM sends."""

    def __init__(self, lam: Any, function: str, stream_arn: str, region: str, role_arn: str = "") -> None:
        super().__init__(stream_arn, region, role_arn)
        self.lam = lam
        self.name = function
        config = deployed_configuration(lam, function)
        if config is None:
            raise ReplayError(f"function {function!r} is not deployed (or not readable) in {region}")
        self.role_arn = role_arn or str(config.get("Role", ""))
        variables = (config.get("Environment") or {}).get("Variables") or {}
        self.namespace = str(variables.get("PIPELINE_CONSUMER", function))

    def _call(self, event: dict[str, Any]) -> tuple[bool, Any, dict[str, Any] | None]:
        resp = self.lam.invoke(
            FunctionName=self.name, InvocationType="RequestResponse", Payload=json.dumps(event).encode()
        )
        raw = resp["Payload"].read()
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode("utf-8", "replace")
        if resp.get("FunctionError"):
            error = payload if isinstance(payload, dict) else {"errorType": resp["FunctionError"]}
            return False, None, error
        return True, payload, None

    def _where(self) -> str:
        return f"; see the function's CloudWatch log group /aws/lambda/{self.name}"

    def describe(self) -> str:
        """What this target writes."""
        return f"{self.name}: the deployed function, invoked synchronously (checkpoints {self.namespace!r})"

    def close(self) -> None:
        """Nothing to release."""


class StreamTarget:
    """Back into a stream: user records re-aggregated by the producer under their partition keys."""

    def __init__(self, settings: Settings, stream_name: str, producer: Any = None) -> None:
        from producers.producer import KinesisProducer

        self.name = f"stream {stream_name}"
        self.stream_name = stream_name
        self.producer = producer or KinesisProducer(stream_name, settings)
        self.user_records = 0
        self.poison = 0

    def describe(self) -> str:
        """What this target writes."""
        return (
            f"stream {self.stream_name}: user records re-aggregated under their partition keys "
            f"(new sequence numbers; consumers drop them only by event id)"
        )

    def deliver(self, shard_id: str, records: Sequence[RawRecord]) -> None:
        """Put every user record of the batch and wait until all are stored."""
        futures = []
        for r in records:
            try:
                subs = kpl.deaggregate(r.data, r.partition_key)
            except PoisonRecord:
                # A corrupt aggregate would only be quarantined again downstream.
                self.poison += 1
                continue
            for sub in subs:
                futures.append(self.producer.put(sub.data, sub.partition_key, sub.explicit_hash_key))
        self.producer.flush()
        try:
            for f in futures:
                f.result()
        except PipelineError as exc:
            raise ReplayError(f"{self.name}: {exc} (batch of {shard_id}); {RESUME_HINT}") from None
        self.user_records += len(futures)

    def close(self) -> None:
        """Flush what is buffered."""
        self.producer.close()


def local_consumers(
    settings: Settings,
    lam: Any,
    consumers: Sequence[str],
    overrides: Mapping[str, Mapping[str, str]],
    stream_arn: str,
    log_dir: Path | None,
    concurrency: int = 1,
) -> list[LocalConsumer]:
    """One local target per consumer, configured as its deployed function plus ``overrides``."""
    out = []
    for c in consumers:
        handler_of(c)
        config = deployed_configuration(lam, function_name(settings, c)) or {}
        deployed = (config.get("Environment") or {}).get("Variables") or {}
        env = consumer_environment(settings, c, deployed, overrides.get(c, {}))
        role = str(config.get("Role", ""))
        out.append(LocalConsumer(c, env, stream_arn, settings.region, role, log_dir, concurrency=concurrency))
    return out
