"""Per-function log files and ``pipeline logs [--follow]``."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from pipeline.cli import main
from tests.pipeline.esm.conftest import PROBE, Esm


def test_handler_output_goes_to_the_function_log_and_pipeline_logs_shows_it(
    esm: Esm, capsys: pytest.CaptureFixture[str]
) -> None:
    """AWS: "The runtime captures logging output from your function and sends it to Amazon CloudWatch
    Logs. In addition to logging your function's output, the runtime also logs entries when function
    invocation starts and ends. This includes a report log with the request ID" (Lambda programming
    model); locally each function has ``<state>/logs/<function>.log``."""
    fn = esm.function("talks", handler=PROBE)
    esm.mapping(fn, BatchSize=5)
    esm.put(count=2)
    esm.drain()
    log = (esm.settings.state_dir / "logs" / f"{fn}.log").read_text()
    for expected in ("START RequestId:", "probe says hello", "END RequestId:", "REPORT RequestId:"):
        assert expected in log
    assert main(["logs", "--state-dir", str(esm.settings.state_dir), "--lines", "50"]) == 0
    out = capsys.readouterr().out
    assert f"{fn}: probe says hello" in out


def test_logs_follow_prints_new_lines_of_new_files(esm: Esm) -> None:
    """``pipeline logs --follow`` keeps printing lines appended later, also of logs created later."""
    logs = esm.settings.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "first.log").write_text("old line\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "logs",
            "--follow",
            "--state-dir",
            str(esm.settings.state_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "first.log: old line\n".replace("first.log", "first")
        time.sleep(0.5)
        with open(logs / "first.log", "a") as f:
            f.write("new line\n")
        (logs / "second.log").write_text("from a new file\n")
        seen = {proc.stdout.readline(), proc.stdout.readline()}
        assert seen == {"first: new line\n", "second: from a new file\n"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
