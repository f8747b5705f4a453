"""The one place that makes AWS clients: endpoint, region, retries and timeouts.

Clients come from botocore's session directly: they are the same objects boto3 returns, and
leaving boto3 out saves a Lambda cold start the import of s3transfer (a third of boto3's import
time), which nothing here uses.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.parsers import JSONParser, ResponseParserFactory
from botocore.serialize import JSONSerializer

from pipeline import aws_models, context_params, json_text
from pipeline.coldstart import collector_paused
from pipeline.settings import Settings

_CONFIG = Config(
    retries={"max_attempts": 5, "mode": "standard"},
    connect_timeout=5,
    read_timeout=60,
    max_pool_connections=32,
    tcp_keepalive=True,
)


# One session per process, and one more whose responses keep blobs as base64 text (raw_blobs).
_SESSIONS: dict[bool, botocore.session.Session] = {}


def _base64_text(value: str) -> str:
    return value


_DATA_KEY = b'"Data"'
_JSON_SPACE = b" \t\r\n"


def records_json(body: bytes) -> dict[str, Any] | None:
    """``json.loads(body)`` for a GetRecords response, with each record's ``Data`` (base64 text of
    up to 1 MiB) cut out by a byte search rather than read by the JSON scanner, which visits every
    character: that scan was half the local ESM runner's CPU.

    Each ``"Data": "`` is found by search and its text runs to the next quote (base64 has no quote
    and no escape). The rest, small, goes through ``json.loads`` with empty texts in their place,
    which are then filled in order. The key cannot be mistaken: inside a JSON string a quote is
    escaped, so an unescaped ``"Data"`` followed by a colon is a key. None (the caller then parses
    the plain way) unless the body is a JSON object whose ``Records`` each hold one ``Data`` taken
    out here, and no such text holds a backslash. A control character in a text, which JSON
    refuses unescaped, is passed on; the consumer's strict base64 check then quarantines it."""
    texts: list[str] = []
    kept: list[bytes] = []
    find = body.find
    pos = at = 0
    try:
        while (i := find(_DATA_KEY, at)) >= 0:
            j = at = i + len(_DATA_KEY)
            while body[j] in _JSON_SPACE:
                j += 1
            if body[j] != 0x3A:  # ':'; the quoted word was a value (a partition key), not the key
                continue
            j += 1
            while body[j] in _JSON_SPACE:
                j += 1
            if body[j] != 0x22:  # '"'; not a string
                return None
            end = find(b'"', j + 1)
            text = body[j + 1 : end]
            if end < 0 or b"\\" in text:
                return None
            texts.append(text.decode("utf-8"))
            kept.append(body[pos : j + 1])
            pos = at = end
        if not texts:
            return None
        kept.append(body[pos:])
        parsed = json.loads(b"".join(kept))
    except (IndexError, ValueError):  # cut short, not UTF-8, not JSON: the plain way says what
        return None
    records = parsed.get("Records") if isinstance(parsed, dict) else None
    if type(records) is not list or len(records) != len(texts):
        return None
    for record, data in zip(records, texts, strict=True):
        if type(record) is not dict or record.get("Data") != "":
            return None
        record["Data"] = data
    return parsed


class _RecordsJSONParser(JSONParser):
    """botocore's JSON parser, reading GetRecords bodies by ``records_json``."""

    def _parse_body_as_json(self, body_contents: bytes) -> Any:
        parsed = records_json(body_contents) if body_contents else None
        return parsed if parsed is not None else super()._parse_body_as_json(body_contents)


class _RawBlobsParserFactory(ResponseParserFactory):
    """Parsers for ``raw_blobs`` clients: blobs stay base64 text, JSON bodies are read by
    ``_RecordsJSONParser``."""

    def create_parser(self, protocol_name: str) -> Any:
        if protocol_name == "json":
            return _RecordsJSONParser(**self._defaults)
        return super().create_parser(protocol_name)


_LOCK = threading.Lock()


def client(
    service: str, settings: Settings | None = None, validate: bool = True, raw_blobs: bool = False
) -> Any:
    """A boto3 client for ``service`` that honours the settings' endpoint and region.

    ``validate=False`` skips botocore's client-side parameter validation (the service still
    validates): for hot paths whose request shapes are fixed and exercised by tests through
    validating clients — the state writer's transactions spent a fifth of their CPU in it.

    ``raw_blobs=True`` leaves blobs in JSON-protocol responses as the base64 text the service sent
    (botocore's documented parser default ``blob_parser``), for a caller that passes them on as
    base64: the local ESM runner puts GetRecords' data into Lambda events as it came. Such a client
    reads GetRecords bodies by ``records_json``.

    >>> client("kinesis", Settings(endpoint_url="http://127.0.0.1:4566")).meta.endpoint_url
    'http://127.0.0.1:4566'
    """
    settings = settings or Settings.from_env()
    config = _CONFIG if validate else _CONFIG.merge(Config(parameter_validation=False))
    kwargs: dict[str, Any] = {"region_name": settings.region, "config": config}
    if settings.endpoint_url:
        kwargs["endpoint_url"] = settings.endpoint_url
        if service == "s3" and settings.endpoint_url.startswith("http://"):
            # botocore signs a SHA-256 of every S3 body over plain HTTP, never over HTTPS when the
            # request carries a checksum (as PutObject's does): the local stack signs as AWS is
            # signed. It was most of the lake writer's cost of a put.
            kwargs["config"] = config.merge(Config(s3={"payload_signing_enabled": False}))
        # The local stack accepts any credentials; never let a laptop's real ones leak to it.
        if not os.environ.get("AWS_ACCESS_KEY_ID"):
            kwargs["aws_access_key_id"] = "testing"
            kwargs["aws_secret_access_key"] = "testing"
    # One session per process: it caches the loaded service models, which makes every client
    # after the first cheap (a Lambda cold start builds several). Sessions are not thread-safe,
    # so clients are made under a lock; the clients themselves are.
    with _LOCK, collector_paused():
        # What is made here (the session, botocore's loaded service models: hundreds of
        # thousands of objects) lives as long as the process. Left in the collector's
        # generations, every full pass rescans it: that took more CPU than the requests in a busy
        # producer or handler. Clients are made at start-up, so they are made with the collector
        # off (a pass would only walk them) and what exists afterwards is frozen, out of its way.
        session = _SESSIONS.get(raw_blobs)
        if session is None:
            session = _SESSIONS[raw_blobs] = botocore.session.get_session()
            # Service data from a marshal cache rather than JSON: it was half a cold start.
            aws_models.install(session)
            if raw_blobs:
                factory = _RawBlobsParserFactory()
                factory.set_parser_defaults(blob_parser=_base64_text)
                session.register_component("response_parser_factory", factory)
        made = session.create_client(service, **kwargs)
        _use_plain_json(made)
        # Endpoint rules' context parameters by compiled paths, not a jmespath walk of every
        # request: a third of the state writer's client CPU per 100-action transaction.
        context_params.install(made)
        return made


class PlainJSONSerializer(JSONSerializer):
    """botocore's JSON-protocol serializer, without its walk of the input shape where the walk
    changes nothing.

    botocore copies every parameter into a new dict, shape by shape, before ``json.dumps``: for a
    100-action TransactWriteItems that walk cost more client CPU than the request itself. For an
    operation whose input shapes hold no renamed member, timestamp, float or double (checked once
    per operation), the walk is the identity except that blobs become base64 text, so the body
    is ``json.dumps`` of the parameters with bytes base64-encoded: byte for byte what botocore
    sends (``tests/pipeline/test_aws.py`` compares them). Other operations take botocore's walk.
    Parameter validation, which runs before serialization, is unchanged.
    """

    def __init__(self, inner: JSONSerializer) -> None:
        self.__dict__.update(inner.__dict__)
        self._plain: dict[str, bool] = {}

    def serialize_to_request(self, parameters: Any, operation_model: Any) -> Any:
        name = operation_model.name
        plain = self._plain.get(name)
        if plain is None:
            plain = self._plain[name] = _plain_shape(operation_model.input_shape, set())
        if not plain:
            return super().serialize_to_request(parameters, operation_model)
        serialized = self._create_default_request()
        serialized["method"] = operation_model.http.get("method", self.DEFAULT_METHOD)
        serialized["headers"] = {
            "X-Amz-Target": f"{operation_model.metadata['targetPrefix']}.{name}",
            "Content-Type": f"application/x-amz-json-{operation_model.metadata['jsonVersion']}",
        }
        self._handle_query_compatible_trait(operation_model, serialized)
        body = parameters if operation_model.input_shape is not None else {}
        serialized["body"] = _json_body(body)
        host_prefix = self._expand_host_prefix(parameters, operation_model)
        if host_prefix is not None:
            serialized["host_prefix"] = host_prefix
        return serialized


def _blob(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("utf-8")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _json_body(body: Any) -> bytes:
    """``json.dumps(body)`` as UTF-8, blobs as base64 text: the bytes botocore sends.

    The base64 of a blob needs no JSON escaping, yet ``json.dumps`` scans every character of it;
    for PutRecords that scan was a tenth of the producer's CPU. Blobs are written as
    ``json_text.MARK`` first and their base64 joined in after (``json_text.join_marked``); should a
    parameter's own text hold the mark as well, the body is written the plain way."""
    blobs: list[bytes] = []

    def hold(value: Any) -> str:
        if isinstance(value, bytes | bytearray):
            blobs.append(binascii.b2a_base64(value, newline=False))
            return json_text.MARK
        return _blob(value)  # raises TypeError, as json.dumps's own default does

    # ``check_circular`` finds nothing in parameters (they are trees), for a quarter of the time.
    text = json.dumps(body, default=hold, check_circular=False).encode("utf-8")
    joined = json_text.join_marked(text, blobs) if blobs else text
    return (
        joined
        if joined is not None
        else json.dumps(body, default=_blob, check_circular=False).encode("utf-8")
    )


def _plain_shape(shape: Any, seen: set[str]) -> bool:
    """Whether botocore's JSON walk of ``shape`` is the identity (blobs apart)."""
    if shape is None or shape.name in seen:
        return True
    seen.add(shape.name)
    kind = shape.type_name
    if kind in ("timestamp", "float", "double"):
        return False
    if kind == "structure":
        if getattr(shape, "is_document_type", False):
            return True
        return all(
            "name" not in member.serialization and _plain_shape(member, seen)
            for member in shape.members.values()
        )
    if kind == "list":
        return _plain_shape(shape.member, seen)
    if kind == "map":
        return _plain_shape(shape.key, seen) and _plain_shape(shape.value, seen)
    return True


def _use_plain_json(made: Any) -> None:
    """Put ``PlainJSONSerializer`` in a JSON-protocol client (inside botocore's validation)."""
    holder = made
    inner = getattr(holder, "_serializer", None)
    if inner is not None and hasattr(inner, "_param_validator"):
        holder, inner = inner, getattr(inner, "_serializer", None)
    if type(inner) is JSONSerializer:
        holder._serializer = PlainJSONSerializer(inner)
