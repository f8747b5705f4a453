"""A local Lambda runtime: handlers run in worker processes the way Lambda runs them.

Each worker is one execution environment: it imports the handler module once (cold start), then
serves invocations (warm starts) with the function's environment variables, a context object with
the documented attributes, and a private ``/tmp``. An invocation that outlives the function's
timeout kills its worker (a function error, like AWS); a crashed worker is replaced.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

_CTX = mp.get_context("spawn")


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """What the runtime needs to know of a function (from GetFunctionConfiguration)."""

    name: str
    arn: str
    handler: str
    environment: dict[str, str] = field(default_factory=dict)
    timeout: int = 3
    memory: int = 128
    log_path: Path | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any], log_dir: Path | None = None) -> FunctionSpec:
        """Build from a ``get_function_configuration`` response."""
        name = config["FunctionName"]
        return cls(
            name=name,
            arn=config["FunctionArn"],
            handler=config["Handler"],
            environment=dict(config.get("Environment", {}).get("Variables", {})),
            timeout=int(config.get("Timeout", 3)),
            memory=int(config.get("MemorySize", 128)),
            log_path=(log_dir / f"{name}.log") if log_dir else None,
        )


class LambdaContext:
    """The context object a Python handler receives, with the documented attributes."""

    def __init__(self, spec: dict[str, Any], request_id: str, deadline: float) -> None:
        self.function_name = spec["name"]
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec["arn"]
        self.memory_limit_in_mb = int(spec["memory"])
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{spec['name']}"
        self.log_stream_name = spec["log_stream"]
        self.identity = None
        self.client_context = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function times out."""
        return max(0, int((self._deadline - time.time()) * 1000))


def _worker_main(conn: Connection, spec: dict[str, Any]) -> None:
    if spec.get("log_path"):
        fd = os.open(spec["log_path"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    # Each execution environment has its own /tmp; here a private folder that TMPDIR and
    # ``tempfile`` point to, removed with the environment.
    tmp = spec["tmp"]
    os.environ.update(spec["environment"])
    os.environ.update(
        {
            "TMPDIR": tmp,
            "AWS_LAMBDA_FUNCTION_NAME": spec["name"],
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec["memory"]),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_STREAM_NAME": spec["log_stream"],
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec['name']}",
        }
    )
    tempfile.tempdir = tmp
    started = time.perf_counter()
    try:
        import importlib

        module_name, func_name = spec["handler"].rsplit(".", 1)
        handler = getattr(importlib.import_module(module_name), func_name)
    except Exception as exc:
        conn.send(
            (
                "init_error",
                {
                    "errorType": type(exc).__name__,
                    "errorMessage": str(exc),
                    "stackTrace": traceback.format_exc().splitlines(),
                },
            )
        )
        return
    conn.send(("ready", (time.perf_counter() - started) * 1000))
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        event, request_id, deadline = msg
        print(f"START RequestId: {request_id} Version: $LATEST", flush=True)
        t0 = time.perf_counter()
        try:
            result = handler(event, LambdaContext(spec, request_id, deadline))
            payload = json.dumps(result)
            conn.send(("ok", payload))
        except Exception as exc:
            tb = traceback.format_exc()
            print(tb, flush=True)
            conn.send(
                (
                    "error",
                    {
                        "errorType": type(exc).__name__,
                        "errorMessage": str(exc),
                        "stackTrace": tb.splitlines(),
                    },
                )
            )
        ms = (time.perf_counter() - t0) * 1000
        print(
            f"END RequestId: {request_id}\nREPORT RequestId: {request_id}\tDuration: {ms:.2f} ms", flush=True
        )


@dataclass(slots=True)
class Invocation:
    """The outcome of one invocation."""

    ok: bool
    payload: Any = None  # the handler's JSON-decoded return value when ok
    error: dict[str, Any] | None = None
    duration_ms: float = 0.0
    cold: bool = False
    init_ms: float = 0.0
    request_id: str = ""


class _Worker:
    def __init__(self, spec: FunctionSpec) -> None:
        parent, child = _CTX.Pipe()
        self.conn = parent
        stream = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        self.tmp = tempfile.mkdtemp(prefix=f"lambda-{spec.name}-")
        self.spec_dict = {
            "name": spec.name,
            "arn": spec.arn,
            "handler": spec.handler,
            "environment": spec.environment,
            "memory": spec.memory,
            "log_stream": stream,
            "log_path": str(spec.log_path) if spec.log_path else None,
            "tmp": self.tmp,
        }
        self.proc = _CTX.Process(target=_worker_main, args=(child, self.spec_dict), daemon=True)
        self.proc.start()
        child.close()
        self.ready = False
        self.init_ms = 0.0
        self.init_error: dict[str, Any] | None = None

    def wait_ready(self, timeout: float) -> bool:
        # Lambda gives initialisation up to 10 s on its own, apart from the function timeout.
        if self.ready:
            return True
        if not self.conn.poll(timeout):
            return False
        try:
            kind, value = self.conn.recv()
        except EOFError:
            self.init_error = {"errorType": "Runtime.ExitError", "errorMessage": "worker died"}
            return False
        if kind == "ready":
            self.ready = True
            self.init_ms = float(value)
            return True
        self.init_error = value
        return False

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def close(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.proc.join(timeout=2)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=2)
        shutil.rmtree(self.tmp, ignore_errors=True)


class FunctionRuntime:
    """A pool of execution environments for one function, at most ``concurrency`` at once."""

    def __init__(self, spec: FunctionSpec, concurrency: int = 4, provisioned: int = 0) -> None:
        self.spec = spec
        self.concurrency = max(1, concurrency)
        self._idle: list[_Worker] = []
        self._busy = 0
        self._cv = threading.Condition()
        self._all: list[_Worker] = []
        self.cold_starts = 0
        self.invocations = 0
        self.timeouts = 0
        self.provisioned = provisioned
        # Provisioned concurrency: environments started and initialised before the first event,
        # all at once, so their invocations are warm from the start.
        started = [_Worker(spec) for _ in range(provisioned)]
        for w in started:
            if w.wait_ready(max(10.0, spec.timeout)):
                self._idle.append(w)
                self._all.append(w)
            else:
                w.kill()

    def _acquire(self) -> tuple[_Worker, bool]:
        with self._cv:
            while not self._idle and self._busy >= self.concurrency:
                self._cv.wait()
            self._busy += 1
            if self._idle:
                return self._idle.pop(), False
        w = _Worker(self.spec)
        with self._cv:
            self._all.append(w)
        return w, True

    def _release(self, worker: _Worker | None) -> None:
        with self._cv:
            self._busy -= 1
            if worker is not None:
                self._idle.append(worker)
            self._cv.notify()

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        with self._cv:
            if worker in self._all:
                self._all.remove(worker)

    def _log(self, line: str) -> None:
        """Write a line of the runtime's own to the function's log, as Lambda does."""
        if self.spec.log_path is None:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        with open(self.spec.log_path, "a") as f:
            f.write(f"{stamp}Z {line}\n")

    def invoke(self, event: Any) -> Invocation:
        """Run the handler on ``event`` in a worker and wait for the outcome."""
        worker, cold = self._acquire()
        request_id = str(uuid.uuid4())
        self.invocations += 1
        try:
            if cold:
                self.cold_starts += 1
                if not worker.wait_ready(max(10.0, self.spec.timeout)):
                    err = worker.init_error or {
                        "errorType": "Runtime.InitTimeout",
                        "errorMessage": "initialisation timed out",
                    }
                    self._discard(worker)
                    worker = None  # type: ignore[assignment]
                    return Invocation(False, error=err, cold=True, request_id=request_id)
            t0 = time.perf_counter()
            deadline = time.time() + self.spec.timeout
            try:
                worker.conn.send((event, request_id, deadline))
                if not worker.conn.poll(self.spec.timeout):
                    self.timeouts += 1
                    self._log(f"{request_id} Task timed out after {self.spec.timeout:.2f} seconds")
                    self._discard(worker)
                    worker = None  # type: ignore[assignment]
                    return Invocation(
                        False,
                        error={
                            "errorType": "Sandbox.Timedout",
                            "errorMessage": f"Task timed out after {self.spec.timeout:.2f} seconds",
                        },
                        duration_ms=self.spec.timeout * 1000.0,
                        cold=cold,
                        request_id=request_id,
                    )
                kind, value = worker.conn.recv()
            except (EOFError, OSError, BrokenPipeError):
                worker.proc.join(timeout=1)
                code = worker.proc.exitcode
                self._log(f"RequestId: {request_id} Error: Runtime exited with error: exit status {code}")
                self._discard(worker)
                worker = None  # type: ignore[assignment]
                return Invocation(
                    False,
                    error={
                        "errorType": "Runtime.ExitError",
                        "errorMessage": "the execution environment exited",
                    },
                    cold=cold,
                    request_id=request_id,
                )
            ms = (time.perf_counter() - t0) * 1000
            init_ms = worker.init_ms if cold else 0.0
            if kind == "ok":
                return Invocation(True, json.loads(value), None, ms, cold, init_ms, request_id)
            return Invocation(False, None, value, ms, cold, init_ms, request_id)
        finally:
            self._release(worker)

    def close(self) -> None:
        """Stop every worker."""
        with self._cv:
            workers, self._all, self._idle = list(self._all), [], []
        for w in workers:
            w.close()
