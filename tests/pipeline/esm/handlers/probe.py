"""A handler that reports its execution environment: context, environment, /tmp, warm state."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

OUT = Path(os.environ["OUT_DIR"])
INIT_AT = time.time()
CALLS = 0


def handler(event: dict[str, Any], context: Any) -> None:
    """Write what the function can see about where it runs."""
    global CALLS
    CALLS += 1
    tmp = Path(tempfile.gettempdir())
    left_behind = sorted(p.name for p in tmp.iterdir())
    (tmp / f"call-{CALLS}").write_text("x")
    line = {
        "pid": os.getpid(),
        "calls_in_this_environment": CALLS,
        "init_at": INIT_AT,
        "tmp": str(tmp),
        "tmp_before": left_behind,
        "env": {k: os.environ.get(k) for k in ("GREETING", "AWS_LAMBDA_FUNCTION_NAME", "AWS_REGION")},
        "context": {
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "aws_request_id": context.aws_request_id,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining_ms": context.get_remaining_time_in_millis(),
        },
        "records": len(event["Records"]),
        "keys": [r["kinesis"]["partitionKey"] for r in event["Records"]],
    }
    print("probe says hello", flush=True)
    time.sleep(float(os.environ.get("PROBE_SLEEP", "0")))
    with open(OUT / "probe.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")
