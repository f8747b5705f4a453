"""Fixtures of the consumer tests: one embedded stack (moto server over HTTP) and one set of resources
(stream, bucket, tables) for the whole folder. Tests stay independent through names: each test runs
its consumers under a namespace of its own (checkpoints, lake, archive and quarantine prefixes,
event ids) and gets a fresh state table, without paying a server start each."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.settings import Settings
from tests.conftest import StackProcess
from tests.consumers.helpers import client, create_resources, create_state_table


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    """One embedded stack server for every consumer test."""
    server = StackProcess(Path(tmp_path_factory.mktemp("consumer-stack")) / "server.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def world(shared_stack: StackProcess, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings naming the folder's stream (one shard), bucket and tables, created once."""
    settings = replace(
        Settings(),
        endpoint_url=shared_stack.endpoint_url,
        port=shared_stack.port,
        state_dir=Path(tmp_path_factory.mktemp("state")),
        stream_name="consumer-tests",
        shard_count=1,
        bucket="consumer-tests",
    )
    create_resources(settings)
    return settings


@pytest.fixture
def env(world: Settings) -> Settings:
    """The folder's resources with a fresh state table for this test."""
    settings = replace(world, state_table=f"state-{uuid.uuid4().hex[:10]}")
    create_state_table(settings)
    return settings


@pytest.fixture
def names() -> tuple[str, str]:
    """Consumer names (lake, state) of this test only: its checkpoint and S3 namespaces."""
    tag = uuid.uuid4().hex[:10]
    return f"lake-{tag}", f"state-{tag}"


@pytest.fixture
def clients(env: Settings) -> tuple[object, object, object]:
    """Real boto3 clients (S3, DynamoDB, Kinesis) pointed at the test's stack."""
    return client("s3", env), client("dynamodb", env), client("kinesis", env)
