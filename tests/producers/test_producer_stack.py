"""The producer and ``pipeline produce`` against the embedded stack (moto server over HTTP, with
the stack's per-shard Kinesis limits on)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from aws_kinesis_agg.deaggregator import iter_deaggregate_records

from pipeline import aws
from pipeline.cli import main as cli_main
from pipeline.codecs import kpl
from pipeline.codecs.avro import SchemaRegistry
from pipeline.errors import InvalidInput
from pipeline.settings import Settings
from producers.cli import produce
from producers.errors import StreamNotFound
from producers.producer import KinesisProducer
from producers.shard_map import hash_key
from tests.conftest import StackProcess

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    """One stack server for this module; each test makes its own stream."""
    proc = StackProcess(tmp_path_factory.mktemp("stack") / "server.log")
    try:
        yield proc
    finally:
        proc.stop()


def make_stream(server: StackProcess, name: str, shards: int) -> Settings:
    settings = replace(Settings(), endpoint_url=server.endpoint_url, port=server.port, stream_name=name)
    kinesis = aws.client("kinesis", settings)
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.1})
    return settings


def read_stream(settings: Settings) -> dict[str, list[dict]]:
    """Every Kinesis record of every shard, from the trim horizon, as GetRecords returns them."""
    kinesis = aws.client("kinesis", settings)
    out: dict[str, list[dict]] = {}
    for shard in kinesis.list_shards(StreamName=settings.stream_name)["Shards"]:
        it = kinesis.get_shard_iterator(
            StreamName=settings.stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records: list[dict] = []
        while it:
            resp = kinesis.get_records(ShardIterator=it, Limit=10_000)
            records.extend(resp["Records"])
            if not resp["Records"] and resp.get("MillisBehindLatest", 0) == 0:
                break
            it = resp.get("NextShardIterator")
        out[shard["ShardId"]] = records
    return out


def test_every_record_is_readable_where_the_kcl_looks_for_it(server: StackProcess):
    """Sub-records sit in the shard whose hash key range holds their key, so KCL readers (which
    drop sub-records outside the shard's range) and aws-kinesis-agg both see all of them, at the
    positions the futures reported (https://docs.aws.amazon.com/streams/latest/dev/kinesis-kpl-consumer-deaggregation.html:
    sub-records share the Kinesis record's sequence number and differ by sub-sequence number)."""
    settings = make_stream(server, "producer-kcl", 3)
    kinesis = aws.client("kinesis", settings)
    ranges = {
        s["ShardId"]: (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
        for s in kinesis.list_shards(StreamName=settings.stream_name)["Shards"]
    }
    sent = {}
    with KinesisProducer(settings.stream_name, settings) as producer:
        for i in range(3000):
            key = f"клиент-{i % 311}"
            ehk = str((i * 2**118) % 2**128) if i % 10 == 0 else None
            data = f"event-{i}".encode() * (1 + i % 5)
            sent[data] = (producer.put(data, key, ehk), key, ehk)
    stored = read_stream(settings)
    seen = 0
    for shard_id, records in stored.items():
        lo, hi = ranges[shard_id]
        for rec in records:
            ours = kpl.deaggregate(rec["Data"], rec["PartitionKey"])
            theirs = list(
                iter_deaggregate_records(
                    [
                        {
                            "kinesis": {
                                "kinesisSchemaVersion": "1.0",
                                "sequenceNumber": rec["SequenceNumber"],
                                "approximateArrivalTimestamp": 0.0,
                                "partitionKey": rec["PartitionKey"],
                                "data": base64.b64encode(rec["Data"]),
                            }
                        }
                    ]
                )
            )
            assert [base64.b64decode(t["kinesis"]["data"]) for t in theirs] == [u.data for u in ours]
            for sub, user in enumerate(ours):
                fut, key, ehk = sent[user.data]
                assert (user.partition_key, user.explicit_hash_key or ehk) == (key, ehk)
                assert lo <= (int(ehk) if ehk else hash_key(key)) <= hi
                r = fut.result()
                assert (r.shard_id, r.sequence_number, r.sub_sequence) == (
                    shard_id,
                    rec["SequenceNumber"],
                    sub,
                )
                seen += 1
    assert seen == len(sent) == 3000
    assert producer.stats["failed"] == 0


def test_a_full_shard_is_fed_at_its_limit_without_losing_records(server: StackProcess):
    """2 MiB into one shard limited to 1 MiB/s: the limiter paces it, nothing is lost."""
    settings = make_stream(server, "producer-limit", 1)
    with KinesisProducer(settings.stream_name, settings) as producer:
        futures = [producer.put(b"p" * 1000, f"k{i}") for i in range(2000)]
    assert all(f.result().shard_id == "shardId-000000000000" for f in futures)
    (records,) = read_stream(settings).values()
    assert sum(len(kpl.deaggregate(r["Data"], r["PartitionKey"])) for r in records) == 2000
    assert producer.stats["kinesis_records"] <= 4  # ~2 MiB in aggregates of up to 1 MiB


def test_missing_stream_is_one_clear_error(server: StackProcess):
    settings = replace(Settings(), endpoint_url=server.endpoint_url, stream_name="no-such-stream")
    with pytest.raises(StreamNotFound, match="no-such-stream"):
        KinesisProducer(settings.stream_name, settings)


def test_produce_returns_stats_and_last_positions(server: StackProcess):
    settings = make_stream(server, "producer-generated", 2)
    produced = produce(settings, 500, customers=20, seed=1, quiet=True)
    assert produced["user_records"] == produced["stored"] == 500 and produced["failed"] == 0
    stored = read_stream(settings)
    for shard_id, (seq, sub) in produced["last_positions"].items():
        last = stored[shard_id][-1]
        assert seq == int(last["SequenceNumber"])
        assert sub == len(kpl.deaggregate(last["Data"], last["PartitionKey"])) - 1


def _cli(server: StackProcess, tmp_path: Path, stream: str, *args: str, monkeypatch) -> int:
    monkeypatch.setenv("PIPELINE_STREAM", stream)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return cli_main(["produce", "--port", str(server.port), "--state-dir", str(tmp_path), *args])


def test_cli_from_file_reports_bad_lines_by_number_and_sends_nothing(
    server: StackProcess, tmp_path: Path, capsys, monkeypatch
):
    settings = make_stream(server, "producer-cli-bad", 1)
    good = SchemaRegistry.load().example()
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps(dict(good, amount_cents="12")),
        "",
        json.dumps({k: v for k, v in good.items() if k != "order_id"}),
        json.dumps([1, 2]),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rc = _cli(server, tmp_path, settings.stream_name, "--from", str(path), monkeypatch=monkeypatch)
    err = capsys.readouterr().err
    assert rc == 2
    assert f"{path}:2: not JSON" in err
    assert f"{path}:3: " in err and "amount_cents" in err
    assert f"{path}:5: field 'order_id' is missing" in err
    assert f"{path}:6: an event must be a JSON object" in err
    assert "4 of 5 lines do not match the schema; nothing was sent" in err
    assert "Traceback" not in err
    assert read_stream(settings) == {"shardId-000000000000": []}


def test_cli_from_file_sends_the_good_lines_with_skip_invalid(
    server: StackProcess, tmp_path: Path, capsys, monkeypatch
):
    settings = make_stream(server, "producer-cli-good", 2)
    reg = SchemaRegistry.load()
    events = [
        dict(reg.example(), event_id=f"00000000-0000-4000-8000-{i:012d}", customer_id=f"c-{i}")
        for i in range(40)
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n{oops\n")
    rc = _cli(
        server, tmp_path, settings.stream_name, "--from", str(path), "--skip-invalid", monkeypatch=monkeypatch
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert f"{path}:41: not JSON" in err
    assert "events stored" in out and "40" in out
    got = sorted(
        str(reg.decode(u.data)["event_id"])
        for records in read_stream(settings).values()
        for r in records
        for u in kpl.deaggregate(r["Data"], r["PartitionKey"])
    )
    assert got == sorted(e["event_id"] for e in events)


def test_cli_missing_file_is_one_line(server: StackProcess, tmp_path: Path, capsys, monkeypatch):
    rc = _cli(server, tmp_path, "whatever", "--from", str(tmp_path / "nope.jsonl"), monkeypatch=monkeypatch)
    err = capsys.readouterr().err
    assert rc == 2 and err.strip() == f"error: --from {tmp_path / 'nope.jsonl'}: no such file"


def test_split_shard_under_a_stale_map_loses_nothing(server: StackProcess):
    """After SplitShard the parent closes and its children take its range
    (https://docs.aws.amazon.com/kinesis/latest/APIReference/API_SplitShard.html); a producer still
    holding the old map learns the new one from the first answer naming a shard it did not predict."""
    settings = make_stream(server, "producer-split", 1)
    kinesis = aws.client("kinesis", settings)
    with KinesisProducer(settings.stream_name, settings, shard_map_refresh_interval=3600) as producer:
        before = [producer.put(b"before-%d" % i, f"k{i}") for i in range(300)]
        producer.flush()
        kinesis.split_shard(
            StreamName=settings.stream_name,
            ShardToSplit="shardId-000000000000",
            NewStartingHashKey=str(2**127),
        )
        kinesis.get_waiter("stream_exists").wait(StreamName=settings.stream_name, WaiterConfig={"Delay": 0.1})
        after = [producer.put(b"after-%d" % i, f"k{i}") for i in range(300)]
    assert producer.stats["mispredicted"] >= 1 and producer.stats["shard_map_refreshes"] >= 1
    assert producer.stats["failed"] == 0
    ranges = {
        s["ShardId"]: (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
        for s in kinesis.list_shards(StreamName=settings.stream_name)["Shards"]
    }
    stored = read_stream(settings)
    where: dict[bytes, set] = {}
    for shard_id, records in stored.items():
        for r in records:
            for sub, u in enumerate(kpl.deaggregate(r["Data"], r["PartitionKey"])):
                where.setdefault(u.data, set()).add((shard_id, r["SequenceNumber"], sub))
    for i, fut in enumerate(after):
        res = fut.result()
        lo, hi = ranges[res.shard_id]
        assert res.shard_id != "shardId-000000000000"
        assert lo <= hash_key(f"k{i}") <= hi
        assert (res.shard_id, res.sequence_number, res.sub_sequence) in where[b"after-%d" % i]
    assert all(f.result().shard_id == "shardId-000000000000" for f in before)


def test_put_many_stores_every_record_where_put_would(server: StackProcess):
    """``put_many`` routes and aggregates a block at a time; every record lands in the shard
    whose range holds its key, in order within its key, and each future reports where."""
    settings = make_stream(server, "producer-many", 3)
    kinesis = aws.client("kinesis", settings)
    ranges = {
        s["ShardId"]: (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
        for s in kinesis.list_shards(StreamName=settings.stream_name)["Shards"]
    }
    records = [(f"many-{i}".encode() * (1 + i % 7), f"ключ-{i % 97}") for i in range(5000)]
    with KinesisProducer(settings.stream_name, settings) as producer:
        futures = producer.put_many(records[:2500]) + producer.put_many(records[2500:])
    assert producer.stats["user_records"] == 5000 and producer.stats["failed"] == 0
    where = {}
    for shard_id, stored in read_stream(settings).items():
        for rec in stored:
            for sub, user in enumerate(kpl.deaggregate(rec["Data"], rec["PartitionKey"])):
                where[user.data] = (shard_id, rec["SequenceNumber"], sub, user.partition_key)
    assert len(where) == len(records)
    order: dict[str, list[tuple[int, int]]] = {}
    for (data, key), fut in zip(records, futures, strict=True):
        r = fut.result()
        shard_id, seq, sub, stored_key = where[data]
        assert (r.shard_id, r.sequence_number, r.sub_sequence, stored_key) == (shard_id, seq, sub, key)
        lo, hi = ranges[shard_id]
        assert lo <= hash_key(key) <= hi
        order.setdefault(key, []).append((int(seq), sub))
    assert all(positions == sorted(positions) for positions in order.values())


def test_put_many_and_put_events_refuse_a_bad_record_and_queue_nothing(server: StackProcess):
    settings = make_stream(server, "producer-many-bad", 1)
    reg = SchemaRegistry.load()
    with KinesisProducer(settings.stream_name, settings) as producer:
        with pytest.raises(InvalidInput, match="record 2: "):
            producer.put_many([(b"a", "k"), (b"b", "k"), (b"c", "")])
        bad = dict(reg.example(), amount_cents="lots")
        with pytest.raises(InvalidInput, match="event 1: event does not match schema"):
            producer.put_events([reg.example(), bad])
        with pytest.raises(
            InvalidInput, match="event 1: partition key must have 1 to 256 characters, not 300"
        ):
            producer.put_events([reg.example(), dict(reg.example(), customer_id="c" * 300)])
        with pytest.raises(InvalidInput, match="event 0: .*record limit"):
            producer.put_events([dict(reg.example(), order_id="o" * 1_100_000)])
        assert producer.outstanding() == 0 and producer.stats["user_records"] == 0
        futures = producer.put_events(
            [reg.example(), dict(reg.example(), event_id="00000000-0000-4000-8000-000000000002")]
        )
    assert [f.result().sub_sequence for f in futures] == [0, 1]
    (records,) = read_stream(settings).values()
    bodies = [u.data for r in records for u in kpl.deaggregate(r["Data"], r["PartitionKey"])]
    assert [str(reg.decode(b)["event_id"])[-1] for b in bodies] == ["1", "2"]
