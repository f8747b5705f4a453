"""Builds a consumer's processor from the environment, once per Lambda execution environment."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from consumers.core.checkpoint import CheckpointStore
from consumers.core.decode import Decoder
from consumers.core.event_ids import EventIdStore
from consumers.core.processor import BatchProcessor
from consumers.core.quarantine import Quarantine
from consumers.core.sink import Sink
from pipeline import aws
from pipeline.codecs.avro import SchemaRegistry
from pipeline.settings import Settings


def build(default_consumer: str, make_sink: Callable[[Settings, SchemaRegistry], Sink]) -> BatchProcessor:
    """A processor wired to the clients and tables the settings name."""
    logging.getLogger("consumers").setLevel(os.environ.get("LOG_LEVEL", "INFO"))
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(message)s")
    settings = Settings.from_env()
    consumer = os.environ.get("PIPELINE_CONSUMER", default_consumer)
    registry = SchemaRegistry.load()
    ddb = aws.client("dynamodb", settings)
    s3 = aws.client("s3", settings)
    event_ids: str | EventIdStore = settings.event_id_dedupe
    if settings.event_id_dedupe == "table":
        event_ids = EventIdStore(ddb, settings.event_id_table, consumer, settings.event_id_ttl_seconds)
    return BatchProcessor(
        consumer=consumer,
        decoder=Decoder(registry),
        checkpoints=CheckpointStore(ddb, settings.checkpoint_table, consumer),
        sink=make_sink(settings, registry),
        quarantine=Quarantine(s3, settings.bucket, settings.quarantine_prefix, consumer),
        event_ids=event_ids,
    )
