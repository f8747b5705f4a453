"""Fixtures that start real components: the embedded stack's server over HTTP on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.settings import Settings
from pipeline.stack.bootstrap import bootstrap

# No test may reach a real AWS account, whatever the developer's environment holds.
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
    os.environ.pop(_var, None)
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StackProcess:
    """The embedded stack server in its own process, exactly as ``make up`` runs it."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline.stack.server", "--port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"stack server exited: {log.read_text()[-500:]}")
            time.sleep(0.05)
        raise RuntimeError("stack server did not start within 30 s")

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


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
