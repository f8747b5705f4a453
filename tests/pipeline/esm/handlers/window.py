"""A tumbling-window handler: counts records in the window's state, as AWS's example does."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

OUT = Path(os.environ["OUT_DIR"])


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Add this batch's records to the state; record what came in."""
    incoming = dict(event.get("state") or {})
    state = dict(incoming)
    state["count"] = int(state.get("count", 0)) + len(event["Records"])
    line = {k: v for k, v in event.items() if k != "Records"}
    line["records"] = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
    with open(OUT / "window.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")
    return {"state": state, "batchItemFailures": []}
