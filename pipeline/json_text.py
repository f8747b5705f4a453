"""JSON text with long strings that need no escaping joined in after ``json.dumps``.

``json.dumps`` checks every character of every string for what JSON escapes. For base64 text of
hundreds of kilobytes (a Kinesis record's data) that check is most of the work and finds nothing.
So the value is dumped with ``MARK`` in place of each such string, and ``join_marked`` puts the
strings in where the marks are: PutRecords bodies (``pipeline.aws``) and the lake writer's raw
archive lines (``consumers.lake_writer.archive``) are written this way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import AnyStr

# Control characters, which JSON always escapes: the text holds ``"\u0000verbatim\u0000"``.
MARK = "\x00verbatim\x00"
_QUOTED_MARK = json.dumps(MARK)
_QUOTED_MARK_BYTES = _QUOTED_MARK.encode()


def join_marked(text: AnyStr, pieces: Sequence[AnyStr]) -> AnyStr | None:
    """``text`` (``json.dumps`` output with ``MARK`` where each of ``pieces`` goes, in order) with
    each mark replaced by its piece as a JSON string. The pieces must need no escaping, as base64
    does not. None when the marks are not one per piece (another string of the value held the
    mark): the caller then dumps the value the plain way. Text and pieces are both ``str`` or both
    ``bytes`` (UTF-8 text, as sent: base64 from ``b2a_base64`` is joined without a copy to ``str``).

    Example:
        >>> join_marked(json.dumps({"a": MARK, "b": 1}), ["QUE="])
        '{"a": "QUE=", "b": 1}'
    """
    if isinstance(text, str):
        parts, quote = text.split(_QUOTED_MARK), '"'
    else:
        parts, quote = text.split(_QUOTED_MARK_BYTES), b'"'
    if len(parts) != len(pieces) + 1:
        return None
    out = [parts[0]]
    for piece, part in zip(pieces, parts[1:], strict=True):
        out += (quote, piece, quote, part)
    return text[:0].join(out)
