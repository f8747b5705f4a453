"""Fixtures that start real components: the embedded stack's server over HTTP on a free port."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.settings import Settings
from pipeline.stack.bootstrap import bootstrap
from pipeline.stack.processes import ServerProcess, free_port

# No test may reach a real AWS account, whatever the developer's environment holds.
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
    os.environ.pop(_var, None)
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"


# The server process as `make up` runs it; tests import these names from here.
StackProcess = ServerProcess
__all__ = ["StackProcess", "free_port"]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[StackProcess]:
    """A fresh, empty embedded stack (moto server over HTTP) for one test."""
    server = StackProcess(tmp_path / "server.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings(stack: StackProcess, tmp_path: Path) -> Settings:
    """Settings pointed at the test's stack, with a private state folder."""
    return replace(Settings(), endpoint_url=stack.endpoint_url, port=stack.port, state_dir=tmp_path / "state")


@pytest.fixture
def pipeline_stack(settings: Settings) -> Settings:
    """The test's stack with the pipeline's resources created (stream, bucket, tables, ESMs)."""
    bootstrap(settings)
    return settings
