"""Builds a consumer's processor from the environment, once per Lambda execution environment."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from consumers.core.checkpoint import CheckpointStore
from consumers.core.decode import Decoder
from consumers.core.event_ids import make_filter
from consumers.core.processor import BatchProcessor
from consumers.core.quarantine import Quarantine
from consumers.core.sink import Sink
from pipeline import aws
from pipeline.codecs.avro import SchemaRegistry
from pipeline.observability.logs import configure
from pipeline.settings import Settings


@dataclass(frozen=True, slots=True)
class Clients:
    """The boto3 clients one execution environment shares between its parts (one per service)."""

    s3: Any
    dynamodb: Any


def build(
    default_consumer: str,
    make_sink: Callable[[Settings, SchemaRegistry, Clients], Sink],
    settings: Settings | None = None,
) -> BatchProcessor:
    """A processor wired to the clients and tables the settings name.

    ``PIPELINE_CONSUMER`` overrides the consumer name (the checkpoint namespace), so a reprocess
    can run the same handler under a namespace of its own.

    Example:
        >>> processor = build("lake-writer", lambda s, reg, c: LakeSink(c.s3, s.bucket, ...))
    """
    settings = settings or Settings.from_env()
    consumer = os.environ.get("PIPELINE_CONSUMER", default_consumer)
    configure(consumer)
    registry = SchemaRegistry.load()
    clients = Clients(s3=aws.client("s3", settings), dynamodb=aws.client("dynamodb", settings))
    sink = make_sink(settings, registry, clients)
    return BatchProcessor(
        consumer=consumer,
        decoder=Decoder(registry, fields=getattr(sink, "fields", None)),
        checkpoints=CheckpointStore(clients.dynamodb, settings.checkpoint_table, consumer),
        sink=sink,
        quarantine=Quarantine(clients.s3, settings.bucket, settings.quarantine_prefix, consumer),
        event_ids=make_filter(
            settings.event_id_dedupe,
            clients.dynamodb,
            settings.event_id_table,
            consumer,
            settings.event_id_ttl_seconds,
        ),
    )
