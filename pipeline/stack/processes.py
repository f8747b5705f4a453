"""Background processes of the local stack, tracked by pid files under the state folder."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from pipeline.errors import StackError


def pid_file(state_dir: Path, name: str) -> Path:
    """Where the pid of process ``name`` is kept."""
    return state_dir / f"{name}.pid"


def log_file(state_dir: Path, name: str) -> Path:
    """Where process ``name`` writes its output."""
    return state_dir / "logs" / f"{name}.log"


def running_pid(state_dir: Path, name: str) -> int | None:
    """The pid of ``name`` if its pid file names a live process, else None (stale file removed)."""
    path = pid_file(state_dir, name)
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        path.unlink(missing_ok=True)
        return None
    except PermissionError:
        return pid
    # A zombie or a recycled pid of another program does not count as ours.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"pipeline" not in cmdline:
            path.unlink(missing_ok=True)
            return None
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            path.unlink(missing_ok=True)
            return None
    except OSError:
        pass
    return pid


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def start(state_dir: Path, name: str, args: list[str], env: dict[str, str] | None = None) -> int:
    """Start ``python -m <args>`` detached, with its pid and log files; return the pid."""
    log = log_file(state_dir, name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    pid_file(state_dir, name).write_text(str(proc.pid))
    return proc.pid


def wait_for_port(host: str, port: int, pid: int, timeout: float = 30.0, log: Path | None = None) -> None:
    """Wait until ``pid`` listens on host:port; raise with the log's tail if it dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_in_use(host, port):
            return
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            waited = 0
        if waited == pid:
            tail = log.read_text()[-500:] if log and log.exists() else ""
            raise StackError(f"the stack server exited during start-up: {tail.strip()}")
        time.sleep(0.1)
    raise StackError(f"the stack server did not listen on {host}:{port} within {timeout:.0f} s")


def stop(state_dir: Path, name: str, timeout: float = 10.0) -> int | None:
    """Stop ``name`` (SIGTERM, then SIGKILL) if it runs; return the pid that was stopped."""
    pid = running_pid(state_dir, name)
    if pid is None:
        return None
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    pid_file(state_dir, name).unlink(missing_ok=True)
    return pid


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> list[int]:
    """Pids of the direct children of ``pid`` (read from /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


class ServerProcess:
    """``python -m pipeline.stack.server`` in a child process on a free port (tests, benchmarks)."""

    def __init__(self, log: Path, limits: bool = True, timeout: float = 60.0) -> None:
        self.port = free_port()
        self.log = log
        cmd = [sys.executable, "-m", "pipeline.stack.server", "--port", str(self.port)]
        if not limits:
            cmd.append("--no-limits")
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_in_use("127.0.0.1", self.port):
                return
            if self.proc.poll() is not None:
                raise StackError(f"stack server exited: {log.read_text()[-500:]}")
            time.sleep(0.05)
        self.stop()
        raise StackError(f"stack server did not start within {timeout:.0f} s")

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    url = endpoint_url

    def stop(self) -> None:
        """Terminate the server (kill it if it does not stop within 10 s)."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
