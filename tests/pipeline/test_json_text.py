"""Strings joined in after ``json.dumps`` give the text ``json.dumps`` gives, or None."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from pipeline.json_text import MARK, join_marked

_BASE64 = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", max_size=40)


@given(st.lists(st.tuples(st.text(max_size=6), _BASE64), max_size=5), st.booleans())
def test_joined_pieces_read_as_json_dumps_writes_them(items: list[tuple[str, str]], as_bytes: bool) -> None:
    value = [{"k": k, "data": MARK} for k, _ in items]
    pieces = [p for _, p in items]
    text = json.dumps(value)
    expected = json.dumps([{"k": k, "data": p} for k, p in items])
    if as_bytes:
        assert join_marked(text.encode(), [p.encode() for p in pieces]) == expected.encode()
    else:
        assert join_marked(text, pieces) == expected


def test_a_mark_in_another_string_is_refused() -> None:
    text = json.dumps({"data": MARK, "note": MARK})
    assert join_marked(text, ["QQ=="]) is None
    assert join_marked(text.encode(), [b"QQ=="]) is None
    assert join_marked(json.dumps({"data": MARK}), []) is None
