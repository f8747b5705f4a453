"""The replay's progress bar on stderr and its ``--rate`` limit."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class RateLimit:
    """At most ``rate`` records per second on average (0: no limit)."""

    def __init__(self, rate: float = 0.0) -> None:
        self.rate = rate
        self.started: float | None = None
        self.sent = 0

    def wait(self, records: int) -> None:
        """Sleep until ``records`` more may go out."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        if self.started is None:
            self.started = now
        due = self.started + self.sent / self.rate
        if due > now:
            time.sleep(due - now)
        self.sent += records


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """``replay [#####.....] 12,345 records  3,210/s  ETA 0:00:12`` redrawn in place on a terminal."""

    def __init__(self, enabled: bool | None = None, out: TextIO | None = None, width: int = 28) -> None:
        self.out = out or sys.stderr
        self.enabled = self.out.isatty() if enabled is None else enabled
        self.width = width
        self.started = time.monotonic()
        self.records = 0
        self.fraction: float | None = None
        self._drawn = 0.0
        self._finished = False

    def update(self, records: int, fraction: float | None) -> None:
        """Add delivered records; ``fraction`` is the share of the work done (None: unknown)."""
        self.records += records
        if fraction is not None:
            self.fraction = max(0.0, min(1.0, fraction))
        now = time.monotonic()
        if self.enabled and now - self._drawn >= 0.2:
            self._drawn = now
            self._draw(end="")

    def rate(self) -> float:
        """Records per second so far."""
        return self.records / max(time.monotonic() - self.started, 1e-9)

    def line(self) -> str:
        """The bar as text."""
        elapsed = time.monotonic() - self.started
        f = self.fraction
        bar = "#" * int((f or 0.0) * self.width)
        eta = "--:--:--"
        if f is not None and f > 0:
            eta = _clock(elapsed * (1 - f) / f)
        return f"replay [{bar:<{self.width}}] {self.records:,} records  {self.rate():,.0f}/s  ETA {eta}"

    def _draw(self, end: str) -> None:
        self.out.write("\r" + self.line() + end)
        self.out.flush()

    def finish(self) -> None:
        """Leave the final state of the bar on its own line (once, however often it is called)."""
        if self.enabled and not self._finished:
            self._draw(end="\n")
        self._finished = True
