"""Container files written from Avro bodies read back with fastavro, in every lake codec."""

from __future__ import annotations

import io

import fastavro
import pytest

from consumers.lake_writer.container import register_zstandard_reader, write_container
from pipeline.codecs.avro import SchemaRegistry
from pipeline.events import generate

REG = SchemaRegistry.load()


@pytest.mark.parametrize("codec", ["deflate", "zstandard", "null"])
def test_bodies_copied_into_blocks_read_back_as_the_events(codec: str) -> None:
    register_zstandard_reader()
    events = list(generate(9, seed=2))
    bodies = [REG.encode(e)[10:] for e in events]
    raw = write_container(
        REG.reader, bodies, codec, b"s" * 16, {"pipeline.first_position": "p"}, block_records=4
    )
    reader = fastavro.reader(io.BytesIO(raw))
    assert reader.codec == codec
    assert reader.metadata["pipeline.first_position"] == "p"
    got = list(reader)
    assert [str(e["event_id"]) for e in got] == [e["event_id"] for e in events]  # type: ignore[index]
    assert [e["amount_cents"] for e in got] == [e["amount_cents"] for e in events]  # type: ignore[index]
    assert raw == write_container(REG.reader, bodies, codec, b"s" * 16, {"pipeline.first_position": "p"}, 4)


def test_an_unknown_codec_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="deflate"):
        write_container(REG.reader, [b""], "snappy", b"s" * 16, {})
