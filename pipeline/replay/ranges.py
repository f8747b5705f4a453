"""Which records a replay covers: sequence and arrival-time bounds, all inclusive."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class Range:
    """Bounds on sequence number and arrival time (seconds); ``None`` leaves a side open."""

    from_sequence: int | None = None
    to_sequence: int | None = None
    from_time: float | None = None
    to_time: float | None = None

    def admits(self, seq: int, arrival: float) -> bool:
        """True when a record with this sequence number and arrival time is in the range."""
        if self.from_sequence is not None and seq < self.from_sequence:
            return False
        if self.to_sequence is not None and seq > self.to_sequence:
            return False
        if self.from_time is not None and arrival < self.from_time:
            return False
        return not (self.to_time is not None and arrival > self.to_time)

    def past_end(self, seq: int, arrival: float) -> bool:
        """True when a record lies after the range, so that reading this shard further is pointless."""
        # Arrival times grow along a shard (approximately), so a later arrival ends the read.
        if self.to_sequence is not None and seq > self.to_sequence:
            return True
        return self.to_time is not None and arrival > self.to_time

    @property
    def bounded(self) -> bool:
        """True when the range has an end (a finished replay of it stays finished)."""
        return self.to_sequence is not None or self.to_time is not None

    def describe(self) -> str:
        """Human form, e.g. ``sequence 10..20, arrival 2026-11-26T22:00:00Z..``."""
        parts = []
        if self.from_sequence is not None or self.to_sequence is not None:
            parts.append(f"sequence {_opt(self.from_sequence)}..{_opt(self.to_sequence)}")
        if self.from_time is not None or self.to_time is not None:
            parts.append(f"arrival {_iso(self.from_time)}..{_iso(self.to_time)}")
        return ", ".join(parts) or "everything"


def _opt(v: int | None) -> str:
    return "" if v is None else str(v)


def _iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(text: str) -> float:
    """ISO 8601 (``2026-11-26T22:00:00Z``, naive means UTC) or epoch seconds, as epoch seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither ISO 8601 (2026-11-26T22:00:00Z) nor epoch seconds") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
