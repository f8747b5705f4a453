"""The marshal cache of botocore's data: the same data, the same requests, and it stands aside."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import DataNotFoundError, UnknownServiceError
from botocore.loaders import Loader

from pipeline import aws, aws_models
from pipeline.settings import Settings

# Every service the project makes clients for (``grep -rn 'aws.client(' pipeline consumers producers``).
SERVICES = ("s3", "dynamodb", "kinesis", "lambda", "sqs", "iam")
TOP_LEVEL = ("endpoints", "partitions", "sdk-default-configuration", "_retry")
ENDPOINT = "http://127.0.0.1:9"


def _same(ours: Any, stock: Any, where: str = "") -> None:
    """Equal, with every mapping's keys in the same order (the order botocore's OrderedDicts keep)."""
    if isinstance(stock, dict):
        assert isinstance(ours, dict) and list(ours) == list(stock), where
        for k in stock:
            _same(ours[k], stock[k], f"{where}/{k}")
    elif isinstance(stock, list):
        assert isinstance(ours, list) and len(ours) == len(stock), where
        for i, (x, y) in enumerate(zip(ours, stock, strict=True)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert type(ours) is type(stock) and ours == stock, where


def _session(loader: Loader | None = None) -> botocore.session.Session:
    session = botocore.session.Session()
    if loader is not None:
        session.register_component("data_loader", loader)
    return session


def _client(session: botocore.session.Session, service: str) -> Any:
    return session.create_client(
        service,
        region_name="us-east-1",
        endpoint_url=ENDPOINT,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=aws._CONFIG,
    )


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder filled by clients of every service the project uses."""
    root = tmp_path_factory.mktemp("botocore-cache")
    loader = aws_models.CachedLoader(root)
    session = _session(loader)
    for service in SERVICES:
        _client(session, service)
    assert loader.stored and not loader.hits
    return root


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("type_name", ["service-2", "endpoint-rule-set-1"])
def test_cached_service_data_is_what_botocore_loads(warm: Path, service: str, type_name: str) -> None:
    cached = aws_models.CachedLoader(warm)
    ours = cached.load_service_model(service, type_name=type_name, api_version=None)
    assert cached.hits == [f"{service}/latest/{type_name}"]
    _same(ours, Loader().load_service_model(service, type_name=type_name, api_version=None))


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_cached_top_level_data_and_its_path_are_what_botocore_loads(warm: Path, name: str) -> None:
    cached = aws_models.CachedLoader(warm)
    data, path = cached.load_data_with_path(name)
    stock, stock_path = Loader().load_data_with_path(name)
    _same(data, stock)
    assert path == stock_path and cached.is_builtin_path(path)


class _Sent(Exception):
    def __init__(self, request: Any) -> None:
        super().__init__("request captured")
        self.request = request


# Headers that differ between any two requests (time, signature over it, per-call ids).
_VOLATILE = {"x-amz-date", "authorization", "amz-sdk-invocation-id", "amz-sdk-request"}

# The operations the pipeline calls, with the shapes it calls them with.
OPERATIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("s3", "put_object", {"Bucket": "b", "Key": "events/v1/a.avro", "Body": b"\x00avro", "IfNoneMatch": "*"}),
    ("s3", "get_object", {"Bucket": "b", "Key": "events/v1/a.avro"}),
    ("s3", "head_object", {"Bucket": "b", "Key": "k"}),
    ("s3", "delete_object", {"Bucket": "b", "Key": "k"}),
    ("s3", "list_objects_v2", {"Bucket": "b", "Prefix": "events/", "ContinuationToken": "t"}),
    ("s3", "create_bucket", {"Bucket": "b"}),
    ("dynamodb", "get_item", {"TableName": "t", "Key": {"pk": {"S": "a#b"}}, "ConsistentRead": True}),
    (
        "dynamodb",
        "update_item",
        {
            "TableName": "t",
            "Key": {"pk": {"S": "k"}},
            "UpdateExpression": "SET #pos = :p ADD n :c",
            "ConditionExpression": "attribute_not_exists(#pos) OR #pos <= :p",
            "ExpressionAttributeNames": {"#pos": "position"},
            "ExpressionAttributeValues": {":p": {"S": "0001"}, ":c": {"N": "3"}},
        },
    ),
    (
        "dynamodb",
        "transact_write_items",
        {
            "TransactItems": [{"Put": {"TableName": "t", "Item": {"id": {"B": b"\x01\x02"}}}}],
            "ClientRequestToken": "tok",
        },
    ),
    ("dynamodb", "batch_write_item", {"RequestItems": {"t": [{"PutRequest": {"Item": {"id": {"S": "e"}}}}]}}),
    ("dynamodb", "batch_get_item", {"RequestItems": {"t": {"Keys": [{"id": {"S": "e"}}]}}}),
    ("dynamodb", "describe_table", {"TableName": "t"}),
    (
        "kinesis",
        "put_records",
        {"StreamName": "s", "Records": [{"Data": b"\xf3\x89\x9a\xc2", "PartitionKey": "k"}]},
    ),
    (
        "kinesis",
        "get_shard_iterator",
        {
            "StreamName": "s",
            "ShardId": "shardId-000000000000",
            "ShardIteratorType": "AT_TIMESTAMP",
            "Timestamp": datetime(2026, 11, 27, tzinfo=UTC),
        },
    ),
    ("kinesis", "get_records", {"ShardIterator": "it", "Limit": 100}),
    ("kinesis", "list_shards", {"StreamName": "s"}),
    ("kinesis", "describe_stream_summary", {"StreamName": "s"}),
    ("sqs", "send_message", {"QueueUrl": f"{ENDPOINT}/123456789012/q", "MessageBody": "{}"}),
    ("sqs", "receive_message", {"QueueUrl": f"{ENDPOINT}/123456789012/q", "MaxNumberOfMessages": 10}),
    ("sqs", "get_queue_url", {"QueueName": "q"}),
    ("lambda", "list_event_source_mappings", {"FunctionName": "f"}),
    ("lambda", "get_function_configuration", {"FunctionName": "f", "Qualifier": "live"}),
    ("lambda", "invoke", {"FunctionName": "f", "Payload": b"{}"}),
]


def _request(client: Any, operation: str, params: dict[str, Any]) -> tuple[Any, ...]:
    def stop(request: Any, **_: Any) -> None:
        raise _Sent(request)

    client.meta.events.register_first("before-send", stop)
    with pytest.raises(_Sent) as sent:
        getattr(client, operation)(**params)
    req = sent.value.request
    headers = {k: v for k, v in req.headers.items() if k.lower() not in _VOLATILE}
    body = req.body.read() if hasattr(req.body, "read") else req.body
    return req.method, req.url, headers, body


@pytest.mark.parametrize(("service", "operation", "params"), OPERATIONS, ids=[o[1] for o in OPERATIONS])
def test_requests_from_cached_models_are_byte_identical_to_botocores(
    warm: Path, service: str, operation: str, params: dict[str, Any]
) -> None:
    loader = aws_models.CachedLoader(warm)
    ours = _request(_client(_session(loader), service), operation, params)
    theirs = _request(_client(_session(Loader()), service), operation, params)
    assert f"{service}/latest/service-2" in loader.hits  # the client really came from the cache
    assert ours == theirs


def test_a_service_not_yet_cached_is_loaded_from_botocore_and_cached(tmp_path: Path) -> None:
    loader = aws_models.CachedLoader(tmp_path)
    _client(_session(loader), "sts")
    assert "sts/latest/service-2" in loader.stored
    again = aws_models.CachedLoader(tmp_path)
    client = _client(_session(again), "sts")
    assert "sts/latest/service-2" in again.hits
    assert "GetCallerIdentity" in client.meta.service_model.operation_names


def test_unknown_services_and_missing_data_fail_as_with_botocore_and_cache_nothing(tmp_path: Path) -> None:
    loader = aws_models.CachedLoader(tmp_path)
    with pytest.raises(UnknownServiceError, match="no-such-service"):
        loader.load_service_model("no-such-service", "service-2")
    with pytest.raises(DataNotFoundError):
        loader.load_service_model("sts", "waiters-2")  # STS has no waiters
    with pytest.raises(DataNotFoundError):
        loader.load_service_model("s3", "service-2", api_version="1999-01-01")
    with pytest.raises(DataNotFoundError):
        loader.load_data("no-such-file")
    assert not loader.stored
    assert not list(tmp_path.rglob("*.marshal"))


def test_names_that_are_not_botocores_go_to_botocore_untouched(tmp_path: Path) -> None:
    loader = aws_models.CachedLoader(tmp_path)
    with pytest.raises(UnknownServiceError):
        loader.load_service_model("../../etc", "service-2")
    assert not list(tmp_path.rglob("*"))


def test_a_damaged_cache_file_is_loaded_again_and_rewritten(tmp_path: Path) -> None:
    first = aws_models.CachedLoader(tmp_path)
    first.load_data("partitions")
    (tmp_path / "partitions.marshal").write_bytes(b"\x00garbage")
    second = aws_models.CachedLoader(tmp_path)
    _same(second.load_data("partitions"), Loader().load_data("partitions"))
    assert second.stored == ["partitions"] and not second.hits
    third = aws_models.CachedLoader(tmp_path)
    third.load_data("partitions")
    assert third.hits == ["partitions"]


def test_a_cache_that_cannot_be_written_only_costs_speed(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    loader = aws_models.CachedLoader(blocker / "cache")
    client = _client(_session(loader), "dynamodb")
    assert client.meta.service_model.service_name == "dynamodb"
    assert not loader.stored and not loader.hits


def test_cache_folder_follows_the_environment_and_names_the_botocore_version(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(aws_models.ENV, str(tmp_path))
    root = aws_models.cache_dir()
    assert root is not None and root.parent == tmp_path
    assert root.name.startswith(f"botocore-{botocore.__version__}-py")
    for off in ("off", "0", ""):
        monkeypatch.setenv(aws_models.ENV, off)
        assert aws_models.cache_dir() is None
    monkeypatch.delenv(aws_models.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert aws_models.cache_dir().parent == tmp_path / "xdg" / "kinesis-pipeline"  # type: ignore[union-attr]


def test_the_cache_stands_aside_where_botocore_could_find_other_data(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(aws_models.ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(Loader, "CUSTOMER_DATA_PATH", str(tmp_path / "models"))
    monkeypatch.delenv("AWS_DATA_PATH", raising=False)
    assert isinstance(aws_models.install(_session()), aws_models.CachedLoader)
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path / "extra"))
    assert aws_models.install(_session()) is None
    monkeypatch.delenv("AWS_DATA_PATH")
    (tmp_path / "models").mkdir()
    assert aws_models.install(_session()) is None
    monkeypatch.setenv(aws_models.ENV, "off")
    (tmp_path / "models").rmdir()
    assert aws_models.install(_session()) is None


def test_the_command_line_fills_a_cache_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(aws_models.ENV, str(tmp_path))
    assert aws_models.main(["s3", "dynamodb"]) == 0
    (root,) = tmp_path.iterdir()
    assert (root / "s3" / "latest" / "service-2.marshal").is_file()
    assert (root / "dynamodb" / "latest" / "endpoint-rule-set-1.marshal").is_file()
    assert (root / "endpoints.marshal").is_file()


def test_project_clients_use_the_cached_loader_when_it_applies() -> None:
    aws.client("dynamodb", Settings(endpoint_url=ENDPOINT, region="us-east-1"))
    session = aws._SESSIONS[False]
    loader = session.get_component("data_loader")
    expected = aws_models.cache_dir() is not None and aws_models.applies(session)
    assert isinstance(loader, aws_models.CachedLoader) == expected
