"""Fixtures of the stack tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.conftest import free_port


@pytest.fixture(scope="module")
def unlimited_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A stack server started with ``--no-limits``."""
    port = free_port()
    with open(tmp_path_factory.mktemp("unlimited") / "server.log", "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.stack.server", "--port", str(port), "--no-limits"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
