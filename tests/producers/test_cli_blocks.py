"""``pipeline produce`` hands the producer blocks of events: every event once, in order."""

from __future__ import annotations

import pytest

from producers.cli import _blocks


@pytest.mark.parametrize(("n", "size"), [(0, 3), (1, 3), (6, 3), (7, 3), (5, 1), (2, 500)])
def test_blocks_cover_the_items_in_order_in_lists_of_size(n: int, size: int) -> None:
    blocks = list(_blocks(iter(range(n)), size))
    assert [x for b in blocks for x in b] == list(range(n))
    assert all(len(b) == size for b in blocks[:-1])
    assert all(0 < len(b) <= size for b in blocks)
