"""A harness for ESM tests: a stream, functions and mappings made through the stack's APIs, test
handlers that record what they saw into a folder, and runners stopped at the end of the test."""

from __future__ import annotations

import io
import itertools
import json
import os
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipeline import aws
from pipeline.esm.runner import EsmRunner
from pipeline.settings import Settings
from tests.conftest import StackProcess

RECORDER = "tests.pipeline.esm.handlers.recorder.handler"
WINDOW = "tests.pipeline.esm.handlers.window.handler"
PROBE = "tests.pipeline.esm.handlers.probe.handler"


_clients: dict[tuple[str, str | None], Any] = {}


def _client(service: str, settings: Settings) -> Any:
    """boto3 clients are thread-safe and slow to make: one per service and server for all tests."""
    key = (service, settings.endpoint_url)
    if key not in _clients:
        _clients[key] = aws.client(service, settings)
    return _clients[key]


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("README.txt", "served from the checkout by the local runtime\n")
    return buf.getvalue()


class Esm:
    """One test's stream, functions, mappings and runners, all through the stack's APIs."""

    def __init__(self, settings: Settings, out: Path, tag: str, shards: int = 1) -> None:
        self.settings = settings
        self.out = out
        self.tag = tag
        self.kinesis = _client("kinesis", settings)
        self.lam = _client("lambda", settings)
        self.sqs = _client("sqs", settings)
        self.stream = f"{tag}-stream"
        self.kinesis.create_stream(StreamName=self.stream, ShardCount=shards)
        desc = self.kinesis.describe_stream_summary(StreamName=self.stream)["StreamDescriptionSummary"]
        self.stream_arn = desc["StreamARN"]
        iam = _client("iam", settings)
        self.role_arn = iam.create_role(
            RoleName=f"{tag}-role",
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )["Role"]["Arn"]
        self.runners: list[EsmRunner] = []
        self.functions: list[str] = []
        self._n = 0

    def function(
        self,
        name: str,
        handler: str = RECORDER,
        env: dict[str, str] | None = None,
        timeout: int = 10,
        tags: dict[str, str] | None = None,
    ) -> str:
        """Create a function whose handler writes into the test's folder; return its name."""
        name = f"{self.tag}-{name}"
        self.functions.append(name)
        self.lam.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=self.role_arn,
            Handler=handler,
            Code={"ZipFile": _zip()},
            Timeout=timeout,
            MemorySize=256,
            Environment={"Variables": {"OUT_DIR": str(self.out), **(env or {})}},
            Tags=tags or {},
        )
        return name

    def mapping(self, function: str, **kwargs: Any) -> str:
        """Create an event source mapping on the test's stream; return its UUID."""
        kwargs.setdefault("StartingPosition", "TRIM_HORIZON")
        kwargs.setdefault("BatchSize", 100)
        resp = self.lam.create_event_source_mapping(
            FunctionName=function, EventSourceArn=self.stream_arn, **kwargs
        )
        return str(resp["UUID"])

    def queue(self, name: str) -> tuple[str, str]:
        """An SQS queue: (url, arn)."""
        url = self.sqs.create_queue(QueueName=f"{self.tag}-{name}")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        return url, arn

    def messages(self, url: str, expect: int, timeout: float = 30) -> list[dict[str, Any]]:
        """Receive ``expect`` messages (JSON bodies) from a queue."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(got) < expect and time.monotonic() < deadline:
            resp = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            got += [json.loads(m["Body"]) for m in resp.get("Messages", [])]
        return got

    def put(
        self,
        marks: list[str] | None = None,
        count: int = 0,
        key: Callable[[int], str] | None = None,
        data: Callable[[int], bytes] | None = None,
    ) -> list[str]:
        """Put records ``{"n": i, "mark": marks[i]}`` in order (one PutRecord each, so the order is
        the stream's); return their sequence numbers."""
        marks = marks if marks is not None else [""] * count
        seqs = []
        for mark in marks:
            n = self._n
            self._n += 1
            payload = data(n) if data else json.dumps({"n": n, "mark": mark}).encode()
            while True:
                try:
                    resp = self.kinesis.put_record(
                        StreamName=self.stream, Data=payload, PartitionKey=key(n) if key else f"k{n}"
                    )
                    break
                except self.kinesis.exceptions.ProvisionedThroughputExceededException:
                    time.sleep(0.2)  # the stack limits writes as AWS does
            seqs.append(resp["SequenceNumber"])
        return seqs

    def runner(self, functions: list[str] | None = None) -> EsmRunner:
        """An ESM runner over this test's mappings (stopped when the test ends)."""
        r = EsmRunner(self.settings, self.settings.state_dir, function_names=functions or self.functions)
        self.runners.append(r)
        return r

    def drain(self, functions: list[str] | None = None, timeout: float = 60) -> EsmRunner:
        """Run a runner until every enabled mapping is caught up; stop it; return it."""
        r = self.runner(functions)
        try:
            assert r.run_until_drained(timeout=timeout), "the ESM did not drain the stream"
        finally:
            r.stop()
        return r

    def calls(self, function: str) -> list[dict[str, Any]]:
        """Every invocation the recorder handler of ``function`` logged, in order."""
        path = self.out / f"{function}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def wait_for(self, check: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
        """Poll ``check`` until it holds; fail the test with ``what`` when it does not in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    def close(self) -> None:
        for r in self.runners:
            if not r.stop_event.is_set():
                r.stop()


def numbers(calls: list[dict[str, Any]]) -> list[list[int]]:
    """The record numbers of each invocation."""
    return [[r["n"] for r in c["records"]] for c in calls]


_count = itertools.count()


def _start(tmp: Path, limits: bool) -> StackProcess:
    # The server reads PIPELINE_STACK_LIMITS at start-up; it inherits this process's environment.
    old = os.environ.get("PIPELINE_STACK_LIMITS")
    os.environ["PIPELINE_STACK_LIMITS"] = "on" if limits else "off"
    try:
        return StackProcess(tmp / "server.log")
    finally:
        if old is None:
            os.environ.pop("PIPELINE_STACK_LIMITS", None)
        else:
            os.environ["PIPELINE_STACK_LIMITS"] = old


@pytest.fixture(scope="session")
def esm_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    """One stack server (limits on) for the ESM tests; each test has its own stream and names."""
    server = _start(tmp_path_factory.mktemp("esm-stack"), limits=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def unlimited_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    """A stack server with Kinesis's throughput limits off (large payload tests)."""
    server = _start(tmp_path_factory.mktemp("esm-unlimited"), limits=False)
    try:
        yield server
    finally:
        server.stop()


def _harness(server: StackProcess, tmp_path: Path) -> Esm:
    settings = replace(
        Settings(), endpoint_url=server.endpoint_url, port=server.port, state_dir=tmp_path / "state"
    )
    out = tmp_path / "out"
    out.mkdir()
    return Esm(settings, out, f"t{next(_count)}")


@pytest.fixture
def esm(esm_stack: StackProcess, tmp_path: Path) -> Iterator[Esm]:
    """A one-shard stream, with helpers to make functions and mappings, and a private state folder."""
    harness = _harness(esm_stack, tmp_path)
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def unlimited_esm(unlimited_stack: StackProcess, tmp_path: Path) -> Iterator[Esm]:
    """As ``esm``, on the stack without throughput limits."""
    harness = _harness(unlimited_stack, tmp_path)
    try:
        yield harness
    finally:
        harness.close()
