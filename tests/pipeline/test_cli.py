"""The `pipeline` CLI as a user runs it: `up`, `up` again, `status`, `down`, and its errors."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[1].startswith("Z"))


def test_help_lists_every_command() -> None:
    out = run("--help")
    assert out.returncode == 0
    for command in ("up", "down", "status", "produce", "esm", "logs"):
        assert re.search(rf"^\s+{command}\b", out.stdout, re.M), command


def test_up_on_a_taken_port_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = run("up", "--port", str(port), "--state-dir", str(tmp_path), "--events", "0")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {port}" in lines[0] and "PORT=" in lines[0]
    assert "Traceback" not in out.stderr


def test_up_with_localstack_not_running_says_how_to_start_it(tmp_path: Path) -> None:
    out = run("up", "--backend", "localstack", "--port", str(free_port()), "--state-dir", str(tmp_path))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "LocalStack is not answering" in lines[0] and "docker compose up" in lines[0]


def test_unreachable_stack_is_one_readable_line(tmp_path: Path) -> None:
    out = run(
        "produce", "--count", "1", "--port", str(free_port()), "--state-dir", str(tmp_path), timeout=120
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "cannot reach" in out.stderr


def test_up_twice_status_and_down(tmp_path: Path) -> None:
    port = str(free_port())
    state = str(tmp_path / "state")
    try:
        up = run("up", "--port", port, "--state-dir", state, "--events", "500", "--customers", "50")
        assert up.returncode == 0, up.stderr
        assert re.search(r"events in S3\s+500 \(500 distinct\)", up.stdout), up.stdout
        assert re.search(r"DynamoDB state items\s+50\b", up.stdout), up.stdout

        again = run("up", "--port", port, "--state-dir", state)
        assert again.returncode == 0 and "already up" in again.stdout

        status = run("status", "--state-dir", state)
        assert status.returncode == 0, status.stderr
        assert "server   running" in status.stdout and "esm      running" in status.stdout
        assert status.stdout.count("shardId-") >= 4
    finally:
        down = run("down", "--state-dir", state)
    pids = [int(p) for p in re.findall(r"pid (\d+)", down.stdout)]
    assert down.returncode == 0 and len(pids) == 2, down.stdout
    assert not any(_alive(p) for p in pids)
    assert "nothing was running" in run("down", "--state-dir", state).stdout
