"""Run reports from sample log lines: the markdown's numbers and three readable PNG plots."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.observability import metrics, report

START = datetime(2026, 11, 27, 0, 0, 0, tzinfo=UTC)
SHARDS = [f"shardId-00000000000{i}" for i in range(4)]


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _emf_line(consumer: str, shard: str, records: int, ms: float, age: float, at: datetime) -> str:
    buf = io.StringIO()
    metrics.batch_metrics(consumer, shard, {"records_in": records, "written": records}, ms, age, out=buf)
    doc = json.loads(buf.getvalue())
    doc["_aws"]["Timestamp"] = int(at.timestamp() * 1000)
    return json.dumps(doc)


def _sample_state(state: Path) -> dict[str, int]:
    """A run of 30 s: the lake writer logs EMF, the state writer plain batch lines; the ESM invokes."""
    logs = state / "logs"
    logs.mkdir(parents=True)
    lake, stw, esm = [], [], []
    # An earlier run's lines, which ``since`` must leave out.
    stw.append(
        json.dumps(
            {
                "ts": _iso(START - timedelta(hours=1)),
                "msg": "batch",
                "consumer": "state-writer",
                "shard": SHARDS[0],
                "records_in": 999,
                "ms": 1.0,
            }
        )
    )
    totals = {"lake-writer": 0, "state-writer": 0}
    for i in range(60):
        at = START + timedelta(seconds=i / 2)
        shard = SHARDS[i % 4]
        n = 100 + 10 * (i % 7)
        lake.append("START RequestId: x Version: $LATEST")
        lake.append(_emf_line("lake-writer", shard, n, 20.0 + i % 9, 500.0 * (i % 5), at))
        lake.append("END RequestId: x")
        stw.append(
            json.dumps(
                {
                    "ts": _iso(at),
                    "level": "INFO",
                    "component": "state-writer",
                    "msg": "batch",
                    "consumer": "state-writer",
                    "shard": shard,
                    "first": "1",
                    "last": "2",
                    "records_in": n,
                    "written": n - 1,
                    "duplicates_delivery": 1,
                    "quarantined": 0,
                    "failed": 0,
                    "ms": 5.0 + i % 4,
                }
            )
        )
        for f in ("pipeline-lake-writer", "pipeline-state-writer"):
            esm.append(
                json.dumps(
                    {
                        "ts": _iso(at),
                        "msg": "invoke",
                        "function": f,
                        "shard": shard,
                        "records": 3,
                        "ok": i != 7,
                        "cold": i < 4,
                        "ms": 30.0 + i % 11,
                    }
                )
            )
        totals["lake-writer"] += n
        totals["state-writer"] += n
    (logs / "pipeline-lake-writer.log").write_text("\n".join(lake) + "\n")
    (logs / "pipeline-state-writer.log").write_text("\n".join(stw) + "\n")
    (logs / "esm.log").write_text("ESM runner: 2 mappings\n" + "\n".join(esm) + "\n")
    (state / "esm").mkdir()
    (state / "esm" / "stats.json").write_text(
        json.dumps(
            {
                "u-1": {
                    "function": "pipeline-lake-writer",
                    "batches": 60,
                    "records": 180,
                    "cold_starts": 4,
                    "last_result": "OK",
                    "positions": {},
                }
            }
        )
    )
    return totals


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_report_writes_markdown_summary_and_three_plots(tmp_path: Path) -> None:
    state = tmp_path / "state"
    totals = _sample_state(state)
    produced = {
        "user_records": 2_000,
        "kinesis_records": 40,
        "requests": 3,
        "retries": 0,
        "throttles": 0,
        "bytes": 90_000,
        "elapsed": 1.5,
    }
    run = report.load_run(
        state,
        title="sample",
        produced=produced,
        elapsed=31.0,
        since=START,
        summary_rows=[("events produced", "2,000")],
    )
    out = tmp_path / "report"
    md = report.write_report(out, run)

    text = md.read_text()
    assert md == out / "README.md" and text.startswith("# Run report: sample")
    for png in ("throughput.png", "lag.png", "latency.png"):
        assert f"]({png})" in text
        width, height = _png_size(out / png)
        assert (width, height) == (1100, 528)
    summary = json.loads((out / "summary.json").read_text())
    lake, stw = summary["consumers"]["lake-writer"], summary["consumers"]["state-writer"]
    assert lake["batches"] == stw["batches"] == 60, "the earlier run's line must be left out"
    assert lake["records_in"] == totals["lake-writer"] and stw["records_in"] == totals["state-writer"]
    assert stw["written"] == totals["state-writer"] - 60 and stw["duplicates_delivery"] == 60
    assert lake["iterator_age_ms"]["max"] == 2_000 and stw["iterator_age_ms"] == {}
    assert stw["handler_ms"]["max"] == 8.0 and stw["handler_ms"]["p50"] == 6.5
    fn = summary["functions"]["pipeline-lake-writer"]
    assert (fn["invocations"], fn["kinesis_records"], fn["errors"], fn["cold_starts"]) == (60, 180, 1, 4)
    assert f"| lake-writer | 60 | {totals['lake-writer']:,} |" in text
    assert "| events produced | 2,000 |" in text and "| Kinesis records | 40 |" in text


def test_throughput_is_records_per_second_in_time_bins() -> None:
    batches = [
        report.BatchPoint(START + timedelta(seconds=s), "c", "s", records=r, ms=1.0)
        for s, r in ((0, 10), (0.5, 10), (1, 30), (3, 40))
    ]
    xs, ys = report.throughput_series(report.Run("t", None, batches=batches))["c"]
    assert xs == [0, 1, 2, 3] and ys == [20, 30, 0, 40]


def test_logs_without_timestamps_still_make_a_report(tmp_path: Path) -> None:
    # What the handlers wrote before the JSON formatter: bare JSON messages, no ts, no EMF.
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "pipeline-lake-writer.log").write_text(
        "\n".join(
            json.dumps(
                {"msg": "batch", "consumer": "lake-writer", "shard": SHARDS[0], "records_in": 50, "ms": 3.0}
            )
            for _ in range(5)
        )
        + "\n"
    )
    md = report.write_report(tmp_path / "r", tmp_path)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["consumers"]["lake-writer"]["records_in"] == 250
    assert all(_png_size(tmp_path / "r" / p) for p in report.PLOTS.values())
    assert "![Per-shard lag](lag.png)" in md.read_text()


def test_report_command_writes_the_folder_and_explains_a_missing_state(tmp_path: Path) -> None:
    _sample_state(tmp_path / "state")
    env = {**os.environ, "MPLBACKEND": "Agg"}
    cmd = [sys.executable, "-m", "pipeline.cli", "report", "--state-dir", str(tmp_path / "state")]
    ok = subprocess.run(
        [*cmd, "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=120
    )
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "out" / "README.md").exists() and "report written" in ok.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "report", "--state-dir", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and "make up" in missing.stderr
