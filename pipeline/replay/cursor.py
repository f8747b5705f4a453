"""A replay's resumable cursor: per shard, the last sequence number every target has taken.

Saved under ``<state dir>/replay/<key>.json`` after each delivered batch, where the key is a hash
of what the command replays and where to. Ctrl-C and the same command continues after the last
delivered batch; targets are idempotent, so a batch cut short is simply delivered again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def cursor_key(command: Mapping[str, Any]) -> str:
    """Stable name of a replay command (same command, same key)."""
    return hashlib.sha256(json.dumps(command, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Cursor:
    """Progress of one replay command, persisted after every change."""

    def __init__(self, path: Path, command: Mapping[str, Any], data: Mapping[str, Any] | None = None) -> None:
        data = data or {}
        self.path = path
        self.command = dict(command)
        self.positions: dict[str, str] = dict(data.get("positions", {}))
        self.finished: set[str] = set(data.get("finished", []))
        self.complete = bool(data.get("complete", False))
        self.started = str(data.get("started") or _now())

    @classmethod
    def open(cls, state_dir: Path, command: Mapping[str, Any], restart: bool = False) -> Cursor:
        """The cursor of ``command`` (fresh when there is none or ``restart``)."""
        path = state_dir / "replay" / f"{cursor_key(command)}.json"
        data = None
        if path.exists() and not restart:
            try:
                data = json.loads(path.read_text())
            except ValueError:
                data = None  # a torn file is only progress lost, never wrong output
        return cls(path, command, data)

    @property
    def resumed(self) -> bool:
        """True when an earlier run of this command made progress."""
        return bool(self.positions or self.finished)

    def after(self, shard_id: str) -> int | None:
        """Last sequence number delivered on the shard, or None."""
        seq = self.positions.get(shard_id)
        return int(seq) if seq is not None else None

    def advance(self, shard_id: str, sequence_number: str) -> None:
        """Everything of the shard up to ``sequence_number`` is delivered."""
        self.positions[shard_id] = sequence_number
        self.save()

    def finish(self, shard_id: str) -> None:
        """The shard's (bounded) range is fully delivered."""
        self.finished.add(shard_id)
        self.save()

    def mark_complete(self) -> None:
        """The whole (bounded) range is delivered: the same command has nothing left to do."""
        self.complete = True
        self.save()

    def save(self) -> None:
        """Write atomically (rename), so an interrupted save keeps the previous cursor."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "command": self.command,
            "positions": self.positions,
            "finished": sorted(self.finished),
            "complete": self.complete,
            "started": self.started,
            "updated": _now(),
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=1, sort_keys=True, default=str))
        tmp.replace(self.path)


def _now() -> str:
    return datetime.now(tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
