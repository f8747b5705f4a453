"""The AWS client factory: the plain JSON serializer sends exactly what botocore's would."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.serialize import JSONSerializer
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import aws, json_text
from pipeline.settings import Settings

ENDPOINT = Settings(endpoint_url="http://127.0.0.1:9", region="us-east-1")


def _both(service: str, operation: str, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    client = aws.client(service, ENDPOINT)
    model = client.meta.service_model.operation_model(operation)
    plain = aws.PlainJSONSerializer(JSONSerializer())
    return plain.serialize_to_request(params, model), JSONSerializer().serialize_to_request(params, model)


_scalar = st.one_of(
    st.text(max_size=20).map(lambda s: {"S": s}),
    st.integers(-(10**20), 10**20).map(lambda n: {"N": str(n)}),
    st.binary(max_size=20).map(lambda b: {"B": b}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
    st.lists(st.binary(min_size=1, max_size=5), min_size=1, max_size=3).map(lambda v: {"BS": v}),
)
_value = st.recursive(
    _scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda v: {"L": v}),
        st.dictionaries(st.text(max_size=5), inner, max_size=3).map(lambda v: {"M": v}),
    ),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.dictionaries(st.sampled_from([":a", ":b", ":c"]), _value, min_size=1), min_size=1, max_size=5)
)
def test_transactions_serialise_byte_for_byte_as_botocore(values: list[dict[str, Any]]) -> None:
    params = {
        "TransactItems": [
            {
                "Update": {
                    "TableName": "t",
                    "Key": {"id": {"S": f"k{i}"}},
                    "UpdateExpression": "SET a = :a",
                    "ExpressionAttributeValues": v,
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            }
            for i, v in enumerate(values)
        ],
        "ClientRequestToken": "token",
    }
    ours, theirs = _both("dynamodb", "TransactWriteItems", params)
    assert ours == theirs


def test_kinesis_put_records_blobs_are_base64_as_botocore_sends_them() -> None:
    params = {
        "StreamName": "s",
        "Records": [{"Data": bytes(range(256)), "PartitionKey": "k", "ExplicitHashKey": "1"}],
    }
    ours, theirs = _both("kinesis", "PutRecords", params)
    assert ours == theirs
    assert b'"Data": "AAECAw' in ours["body"]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.binary(max_size=300),
            st.one_of(
                st.text(min_size=1, max_size=8), st.just(json_text.MARK), st.just(f'"{json_text.MARK}"')
            ),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_put_records_blobs_joined_in_place_match_botocore(records: list[tuple[bytes, str]]) -> None:
    """Blobs are joined into the text after ``json.dumps``; a partition key holding the mark the
    blobs are written as first (the second and third keys drawn) is written the plain way."""
    params = {"StreamName": "s", "Records": [{"Data": d, "PartitionKey": k} for d, k in records]}
    ours, theirs = _both("kinesis", "PutRecords", params)
    assert ours == theirs


def test_a_key_holding_the_blob_mark_is_written_the_plain_way() -> None:
    params = {"StreamName": json_text.MARK, "Records": [{"Data": b"\x01\x02", "PartitionKey": "k"}]}
    ours, theirs = _both("kinesis", "PutRecords", params)
    assert ours == theirs
    assert b'"Data": "AQI="' in ours["body"]


_records_body = st.builds(
    lambda records, compact, more: json.dumps(
        {"Records": records, "NextShardIterator": "AAA=", "MillisBehindLatest": 0, **more},
        separators=(",", ":") if compact else None,
    ).encode(),
    st.lists(
        st.fixed_dictionaries(
            {
                "SequenceNumber": st.integers(0, 10**30).map(str),
                "Data": st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()),
                # Keys that hold the key's own text, quotes, backslashes and non-ASCII.
                "PartitionKey": st.one_of(
                    st.text(min_size=1, max_size=12),
                    st.sampled_from(['"Data": "', "Data", '\\"Data\\":"x', '"Data"', "\\"]),
                ),
            }
        ),
        max_size=5,
    ),
    st.booleans(),
    st.sampled_from([{}, {"ChildShards": []}, {"Data": "x"}]),
)


@settings(max_examples=300, deadline=None)
@given(_records_body, st.booleans())
def test_records_json_reads_what_json_loads_reads(body: bytes, escape_slashes: bool) -> None:
    """``records_json`` gives ``json.loads``'s result or None (then botocore parses the plain way);
    None only for what it does not take: no records, a ``Data`` key elsewhere, an escaped text."""
    if escape_slashes:
        body = body.replace(b"/", b"\\/")  # JSON allows it; the texts are then not cut out
    ours = aws.records_json(body)
    plain = json.loads(body)
    if ours is not None:
        assert ours == plain
    elif plain["Records"] and "Data" not in plain and not (escape_slashes and b"\\/" in body):
        raise AssertionError(f"declined a body it takes: {body[:200]!r}")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b'{"Records": [{"Data": "QQ==", "PartitionKey": "k"}',  # cut short
        b'{"Records": [{"Data": "QQ=="}, {"Data": "Qg==", "Data": "Qw=="}]}',  # a record twice
        b'{"Records": [{"Data": 5}]}',
        b'{"Records": {"Data": "QQ=="}}',
        b'{"Records": [{"PartitionKey": "Data", "Data": "QQ=="}], "x": "\xff"}',
        b'["Data"]',
    ],
)
def test_records_json_leaves_odd_bodies_to_the_plain_parser(body: bytes) -> None:
    assert aws.records_json(body) is None


def test_operations_with_timestamps_take_botocores_walk() -> None:
    params = {
        "StreamName": "s",
        "ShardId": "shardId-000000000000",
        "ShardIteratorType": "AT_TIMESTAMP",
        "Timestamp": datetime(2026, 11, 27, tzinfo=UTC),
    }
    ours, theirs = _both("kinesis", "GetShardIterator", params)
    assert ours == theirs
    assert b'"Timestamp": 1795' in ours["body"]  # botocore's conversion, not json.dumps's refusal


def test_clients_carry_the_plain_serializer_inside_botocores_validation() -> None:
    client = aws.client("dynamodb", ENDPOINT)
    decorator = client._serializer
    assert hasattr(decorator, "_param_validator")  # validation still runs first
    assert isinstance(decorator._serializer, aws.PlainJSONSerializer)
    with pytest.raises(Exception, match="Parameter validation failed"):
        client.update_item(TableName="t", Key={"id": {"S": "k"}}, UpdateExpression=5)
    s3 = aws.client("s3", ENDPOINT)  # REST-XML: botocore's own serializer, untouched
    assert not isinstance(getattr(s3._serializer, "_serializer", None), aws.PlainJSONSerializer)


def test_a_client_without_validation_still_serialises_plainly() -> None:
    client = aws.client("dynamodb", ENDPOINT, validate=False)
    assert isinstance(client._serializer, aws.PlainJSONSerializer)  # no validating wrapper
    assert hasattr(aws.client("dynamodb", ENDPOINT)._serializer, "_param_validator")


def test_a_raw_blobs_client_returns_the_base64_text_kinesis_sent(settings: Settings) -> None:
    """Through the stack over HTTP: the same record read by a stock client (bytes) and by a
    ``raw_blobs`` client (base64 text); other fields alike."""
    import base64

    from pipeline.esm.events import data_bytes, lambda_record, record_size

    kinesis = aws.client("kinesis", settings)
    kinesis.create_stream(StreamName="raw", ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName="raw")
    data = bytes(range(256)) * 3 + b"\xff"
    kinesis.put_record(StreamName="raw", Data=data, PartitionKey="k")
    # More records, one under a partition key that reads like the data's key (``records_json``).
    kinesis.put_records(
        StreamName="raw",
        Records=[{"Data": b"x" * 70_000, "PartitionKey": "Data"}, {"Data": b"y", "PartitionKey": "z"}],
    )
    shard = kinesis.list_shards(StreamName="raw")["Shards"][0]["ShardId"]
    records = {}
    for raw in (False, True):
        c = aws.client("kinesis", settings, raw_blobs=raw)
        it = c.get_shard_iterator(StreamName="raw", ShardId=shard, ShardIteratorType="TRIM_HORIZON")
        got = c.get_records(ShardIterator=it["ShardIterator"])["Records"]
        assert len(got) == 3
        assert [r["PartitionKey"] for r in got] == ["k", "Data", "z"]
        assert [base64.b64decode(r["Data"]) if raw else r["Data"] for r in got[1:]] == [b"x" * 70_000, b"y"]
        records[raw] = got[0]
    assert records[False]["Data"] == data
    assert records[True]["Data"] == base64.b64encode(data).decode()
    assert {k: v for k, v in records[True].items() if k != "Data"} == {
        k: v for k, v in records[False].items() if k != "Data"
    }
    assert data_bytes(records[True]) == data_bytes(records[False]) == len(data)
    assert record_size(records[True]) == record_size(records[False])
    args = ("shardId-000000000000", "arn:s", "us-east-1", "arn:r")
    assert lambda_record(records[True], *args) == lambda_record(records[False], *args)


def test_s3_bodies_over_plain_http_are_not_hashed_into_the_signature(settings: Settings) -> None:
    """As over HTTPS, where a body with a checksum is not signed: the local stack signs as AWS is."""
    s3 = aws.client("s3", settings)
    sent: list[Any] = []
    s3.meta.events.register("before-send.s3.PutObject", lambda request, **_: sent.append(request.headers))
    s3.create_bucket(Bucket="signing")
    s3.put_object(Bucket="signing", Key="k", Body=b"body" * 1000)
    assert s3.get_object(Bucket="signing", Key="k")["Body"].read() == b"body" * 1000
    assert sent[0]["X-Amz-Content-SHA256"] == b"UNSIGNED-PAYLOAD"
    assert any(h.lower().startswith("x-amz-checksum-") or h == "Content-MD5" for h in sent[0])
    plain = aws.client("dynamodb", settings)  # other services keep botocore's signing
    assert plain.meta.config.s3 is None


@pytest.mark.parametrize("n", range(7))
def test_the_size_of_base64_data_is_its_decoded_size(n: int) -> None:
    import base64

    from pipeline.esm.events import data_bytes

    data = b"\x00\xff\x10" * 3
    assert data_bytes({"Data": base64.b64encode(data[:n]).decode()}) == data_bytes({"Data": data[:n]}) == n
