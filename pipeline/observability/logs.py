"""JSON-lines logging for the handler, the ESM runner and the producer: one object per line.

Every line carries ``ts`` (ISO 8601 UTC), ``level``, ``component`` and ``msg``, plus whatever
fields the call site adds (shard, batch range, request id, counts, timing) and whatever is bound
for the current invocation with ``bind``. INFO is one line per batch; DEBUG adds the details.

>>> log = configure("lake-writer")                                 # doctest: +SKIP
>>> with bind(request_id=context.aws_request_id, shard=shard_id):  # doctest: +SKIP
...     event(log, "batch", first=first, last=last, records_in=n, ms=12.5)
{"ts": "2026-11-27T00:10:00.123Z", "level": "INFO", "component": "lake-writer", "msg": "batch", ...}
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, TextIO

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_BOUND: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "pipeline_log_fields", default=MappingProxyType({})
)
_MARK = "_pipeline_json"

# Logger names per component: the existing code logs through these, so configuring them captures it.
LOGGERS = {
    "esm": "pipeline.esm",
    "producer": "producers",
    "consumer": "consumers",
}


def _ts(created: float) -> str:
    return datetime.fromtimestamp(created, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object; a message that is itself a JSON object is merged in."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        out: dict[str, Any] = {
            "ts": _ts(record.created),
            "level": record.levelname,
            "component": self.component,
        }
        msg = record.msg
        fields: dict[str, Any] = {}
        if isinstance(msg, Mapping):
            fields.update(msg)
        else:
            text = record.getMessage()
            # Call sites written before this module log ``json.dumps({...})``; keep their fields flat.
            if text.startswith("{") and text.endswith("}"):
                try:
                    parsed = json.loads(text)
                except ValueError:
                    parsed = None
                if isinstance(parsed, dict):
                    fields.update(parsed)
                else:
                    fields["msg"] = text
            else:
                fields["msg"] = text
        out.update(_BOUND.get())
        out.update(fields)
        out.update({k: v for k, v in vars(record).items() if k not in _STANDARD and k != _MARK})
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        out.setdefault("msg", "")
        return json.dumps(out, default=str, separators=(",", ":"))


def configure(
    component: str,
    *,
    level: str | int | None = None,
    stream: TextIO | None = None,
    path: Path | None = None,
    logger_name: str | None = None,
) -> logging.Logger:
    """Make ``logger_name`` (default: the component's package logger) write JSON lines.

    ``component`` is the value of the ``component`` field: ``esm``, ``producer``, or the consumer's
    name (``lake-writer``). Level comes from ``level``, else ``LOG_LEVEL``, else INFO. Output goes to
    ``path`` when given, else ``stream`` (default stderr, which Lambda sends to CloudWatch Logs).
    Calling it again replaces the handler it added before, so it is safe in warm starts and tests.
    """
    name = logger_name or LOGGERS.get(component, "consumers")
    logger = logging.getLogger(name)
    chosen = level if level is not None else os.environ.get("LOG_LEVEL", "INFO")
    logger.setLevel(chosen.upper() if isinstance(chosen, str) else chosen)
    for h in list(logger.handlers):
        if getattr(h, _MARK, False):
            logger.removeHandler(h)
            h.close()
    handler: logging.Handler
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    setattr(handler, _MARK, True)
    handler.setFormatter(JsonFormatter(component))
    logger.addHandler(handler)
    # Lambda's runtime and basicConfig put a handler on the root logger: without this every line
    # would be written twice, once of them not as JSON.
    logger.propagate = False
    return logger


@contextlib.contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (request id, shard ...) to every line logged inside the block."""
    token = _BOUND.set({**_BOUND.get(), **fields})
    try:
        yield
    finally:
        _BOUND.reset(token)


def bound() -> Mapping[str, Any]:
    """The fields bound for the current block (``bind``), e.g. to put the request id on metrics."""
    return _BOUND.get()


def event(logger: logging.Logger, msg: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one line with ``msg`` and ``fields`` at ``level``."""
    if logger.isEnabledFor(level):
        logger.log(level, {"msg": msg, **fields})


def batch_fields(records: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Shard and batch range of a Lambda Kinesis event's records, as log fields."""
    if not records:
        return {}
    first, last = records[0].get("kinesis", {}), records[-1].get("kinesis", {})
    shard = str(records[0].get("eventID", "")).split(":", 1)[0] or None
    return {
        "shard": shard,
        "first": first.get("sequenceNumber"),
        "last": last.get("sequenceNumber"),
        "kinesis_records": len(records),
    }


def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a log file, skipping lines that are not JSON (START/END/REPORT, tracebacks)."""
    try:
        f = path.open(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    with f:
        for line in f:
            line = line.strip()
            if not (line.startswith("{") and line.endswith("}")):
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                yield obj
