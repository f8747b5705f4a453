"""The state writer with a simulated bug: it ignores REFUNDED events instead of subtracting them.

Deployed in place of the real handler (``Handler`` of the function) to produce a wrong output
version that a reprocess with the real, fixed handler then rebuilds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from consumers.state_writer import model

_add = model.Delta.add


def _add_without_refunds(self: model.Delta, event: Mapping[str, Any]) -> None:
    if event["event_type"] == "REFUNDED":
        return
    _add(self, event)


model.Delta.add = _add_without_refunds  # type: ignore[method-assign]

from consumers.state_writer.handler import lambda_handler  # noqa: E402

__all__ = ["lambda_handler"]
