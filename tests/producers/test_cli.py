"""The produce command's pieces that need no server."""

from __future__ import annotations

from producers.cli import _Tally
from producers.errors import PutFailed
from producers.records import PutResult, RecordFuture, settle


def test_the_produce_tally_keeps_the_numerically_last_position_per_shard() -> None:
    """Sequence numbers compared as numbers, also across lengths; failures counted, first kept."""
    tally = _Tally()
    futures = [RecordFuture() for _ in range(6)]
    for f in futures:
        f.add_done_callback(tally)
    settle(
        futures,
        [
            PutResult("shard-a", "99", 3, 1),
            PutResult("shard-a", "100", 0, 1),  # longer, so larger, though "100" < "99" as text
            PutResult("shard-a", "100", 2, 1),
            PutResult("shard-b", "7", 1, 1),
            PutFailed("first"),
            PutFailed("second"),
        ],
    )
    assert tally.last == {"shard-a": (100, 2), "shard-b": (7, 1)}
    assert (tally.failed, tally.first_error) == (2, "first")
