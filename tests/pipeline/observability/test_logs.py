"""JSON-lines logging: one object per line with ts, level, component, bound fields and counts."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from pipeline.observability import logs


def _lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_a_batch_line_carries_timestamp_level_component_bound_fields_and_counts() -> None:
    buf = io.StringIO()
    log = logs.configure("lake-writer", level="INFO", stream=buf, logger_name="tests.obs.batch")
    event = {
        "Records": [
            {"eventID": "shardId-000000000001:100", "kinesis": {"sequenceNumber": "100"}},
            {"eventID": "shardId-000000000001:105", "kinesis": {"sequenceNumber": "105"}},
        ]
    }
    with logs.bind(request_id="req-1", **logs.batch_fields(event["Records"])):
        logs.event(log, "batch", records_in=120, written=118, ms=12.5)
        logs.event(log, "decoded", level=logging.DEBUG, detail="only at DEBUG")
    logs.event(log, "after", n=1)
    first, after = _lines(buf)
    assert first["msg"] == "batch" and first["level"] == "INFO" and first["component"] == "lake-writer"
    assert first["ts"].endswith("Z") and first["ts"][:2] == "20"
    assert first["request_id"] == "req-1" and first["shard"] == "shardId-000000000001"
    assert (first["first"], first["last"], first["kinesis_records"]) == ("100", "105", 2)
    assert (first["records_in"], first["written"], first["ms"]) == (120, 118, 12.5)
    assert "request_id" not in after, "bound fields must end with their block"


def test_debug_shows_details_and_old_style_json_messages_stay_flat() -> None:
    buf = io.StringIO()
    log = logs.configure("esm", level="DEBUG", stream=buf, logger_name="tests.obs.esm")
    log.debug("decoded %d records", 3)
    log.info(json.dumps({"msg": "invoke", "function": "pipeline-lake-writer", "records": 4, "ok": True}))
    log.warning("plain text", extra={"shard": "shardId-000000000000"})
    debug, invoke, warning = _lines(buf)
    assert debug["level"] == "DEBUG" and debug["msg"] == "decoded 3 records"
    assert invoke["msg"] == "invoke" and invoke["records"] == 4 and invoke["component"] == "esm"
    assert warning["shard"] == "shardId-000000000000" and warning["level"] == "WARNING"


def test_configuring_twice_writes_each_line_once_and_not_to_the_root_logger(tmp_path: Path) -> None:
    root_buf = io.StringIO()
    root_handler = logging.StreamHandler(root_buf)
    logging.getLogger().addHandler(root_handler)
    try:
        path = tmp_path / "logs" / "producer.log"
        logs.configure("producer", path=path, logger_name="tests.obs.producer")
        log = logs.configure("producer", path=path, logger_name="tests.obs.producer")
        logs.event(log, "flush", user_records=10)
        for h in log.handlers:
            h.flush()
    finally:
        logging.getLogger().removeHandler(root_handler)
    assert [line["user_records"] for line in logs.read_lines(path)] == [10]
    assert root_buf.getvalue() == ""


def test_read_lines_skips_what_is_not_a_json_object(tmp_path: Path) -> None:
    path = tmp_path / "f.log"
    path.write_text(
        'START RequestId: x\n{"msg": "batch"}\n[1, 2]\n{broken\nTraceback (most recent call last):\n'
    )
    assert list(logs.read_lines(path)) == [{"msg": "batch"}]
    assert list(logs.read_lines(tmp_path / "missing.log")) == []
