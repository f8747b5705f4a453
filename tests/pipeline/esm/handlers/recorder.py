"""A handler that records every invocation it sees and misbehaves on marked records.

Records carry JSON data ``{"n": int, "mark": str}``. Marks: ``fail`` raises, ``fail_once`` raises
the first time its record is seen, ``partial`` / ``partial_once`` are reported in
``batchItemFailures``, ``sleep`` sleeps ``SLEEP_SECONDS``, ``crash`` kills the process. The
environment variable ``RESPONSE`` (JSON) replaces the return value; ``OUT_DIR`` is where it writes.
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

OUT = Path(os.environ["OUT_DIR"])
NAME = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "fn")
# Module initialisation: once per execution environment (a cold start).
(OUT / f"init-{NAME}-{os.getpid()}").write_text(str(time.time()))
SEEN: set[str] = set()


def _first_time(seq: str) -> bool:
    marker = OUT / f"seen-{NAME}-{seq}"
    if marker.exists():
        return False
    marker.write_text("")
    return True


def handler(event: dict[str, Any], context: Any) -> Any:
    """Record the batch, then act on its marks."""
    records = []
    for r in event.get("Records", []):
        body = json.loads(base64.b64decode(r["kinesis"]["data"]))
        records.append(
            {
                "seq": r["kinesis"]["sequenceNumber"],
                "key": r["kinesis"]["partitionKey"],
                "shard": r["eventID"].split(":")[0],
                "n": body.get("n"),
                "mark": body.get("mark", ""),
            }
        )
    line = {
        "pid": os.getpid(),
        "request_id": context.aws_request_id,
        "start": time.time(),
        "records": records,
        "extra": {k: v for k, v in event.items() if k != "Records"},
    }
    print(f"handling {len(records)} records", flush=True)
    marks = {r["mark"] for r in records}
    if "sleep" in marks:
        time.sleep(float(os.environ.get("SLEEP_SECONDS", "3")))
    line["end"] = time.time()
    with open(OUT / f"{NAME}.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")
    if "crash" in marks:
        os._exit(3)
    if "fail" in marks or any(r["mark"] == "fail_once" and _first_time(r["seq"]) for r in records):
        raise ValueError("a record marked to fail")
    if "RESPONSE" in os.environ:
        return json.loads(os.environ["RESPONSE"])
    failures = [
        {"itemIdentifier": r["seq"]}
        for r in records
        if r["mark"] == "partial" or (r["mark"] == "partial_once" and _first_time(r["seq"]))
    ]
    return {"batchItemFailures": failures}
