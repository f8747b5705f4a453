"""One settings object, built from the environment in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipeline.errors import ConfigError

DEFAULT_PORT = 4566


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None


@dataclass(frozen=True, slots=True)
class Settings:
    """Names of the pipeline's resources and how to reach AWS (or the local stack)."""

    region: str = "us-east-1"
    endpoint_url: str | None = None
    stream_name: str = "pipeline-events"
    shard_count: int = 4
    bucket: str = "pipeline-lake"
    checkpoint_table: str = "pipeline-checkpoints"
    state_table: str = "pipeline-customer-state"
    event_id_table: str = "pipeline-event-ids"
    dlq_prefix: str = "pipeline-on-failure"
    lake_prefix: str = "events/v1"
    raw_prefix: str = "raw/v1"
    quarantine_prefix: str = "quarantine/v1"
    event_id_dedupe: str = "batch"
    event_id_ttl_seconds: int = 7 * 24 * 3600
    lake_codec: str = "deflate"
    state_writes: str = "update"
    state_dir: Path = field(default_factory=lambda: Path(".state"))
    port: int = DEFAULT_PORT

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read ``PIPELINE_*`` and the standard ``AWS_*`` variables."""
        env = os.environ if env is None else env
        port = _int(env, "PORT", DEFAULT_PORT)
        dedupe = env.get("PIPELINE_EVENT_ID_DEDUPE", "batch")
        if dedupe not in ("off", "batch", "table"):
            raise ConfigError(f"PIPELINE_EVENT_ID_DEDUPE={dedupe!r}: choose one of off, batch, table")
        codec = env.get("PIPELINE_LAKE_CODEC", "deflate")
        if codec not in ("deflate", "zstandard", "null"):
            raise ConfigError(f"PIPELINE_LAKE_CODEC={codec!r}: choose deflate, zstandard or null")
        state_writes = env.get("PIPELINE_STATE_WRITES", "update")
        if state_writes not in ("update", "transact"):
            raise ConfigError(f"PIPELINE_STATE_WRITES={state_writes!r}: choose update or transact")
        d = cls()
        return cls(
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or d.region,
            endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            stream_name=env.get("PIPELINE_STREAM", d.stream_name),
            shard_count=_int(env, "SHARDS", d.shard_count),
            bucket=env.get("PIPELINE_BUCKET", d.bucket),
            checkpoint_table=env.get("PIPELINE_CHECKPOINT_TABLE", d.checkpoint_table),
            state_table=env.get("PIPELINE_STATE_TABLE", d.state_table),
            event_id_table=env.get("PIPELINE_EVENT_ID_TABLE", d.event_id_table),
            dlq_prefix=env.get("PIPELINE_DLQ_PREFIX", d.dlq_prefix),
            lake_prefix=env.get("PIPELINE_LAKE_PREFIX", d.lake_prefix),
            raw_prefix=env.get("PIPELINE_RAW_PREFIX", d.raw_prefix),
            quarantine_prefix=env.get("PIPELINE_QUARANTINE_PREFIX", d.quarantine_prefix),
            event_id_dedupe=dedupe,
            event_id_ttl_seconds=_int(env, "PIPELINE_EVENT_ID_TTL", d.event_id_ttl_seconds),
            lake_codec=codec,
            state_writes=state_writes,
            state_dir=Path(env.get("PIPELINE_STATE_DIR", ".state")),
            port=port,
        )

    def local(self, port: int | None = None) -> Settings:
        """The same settings pointed at the embedded stack on 127.0.0.1."""
        port = port or self.port
        return replace(self, endpoint_url=f"http://127.0.0.1:{port}", port=port)

    def function_env(self, consumer: str) -> dict[str, str]:
        """Environment variables a consumer function is deployed with."""
        env = {
            "PIPELINE_CONSUMER": consumer,
            "PIPELINE_BUCKET": self.bucket,
            "PIPELINE_CHECKPOINT_TABLE": self.checkpoint_table,
            "PIPELINE_STATE_TABLE": self.state_table,
            "PIPELINE_EVENT_ID_TABLE": self.event_id_table,
            "PIPELINE_EVENT_ID_DEDUPE": self.event_id_dedupe,
            "PIPELINE_LAKE_CODEC": self.lake_codec,
            "PIPELINE_LAKE_PREFIX": self.lake_prefix,
            "PIPELINE_RAW_PREFIX": self.raw_prefix,
            "PIPELINE_QUARANTINE_PREFIX": self.quarantine_prefix,
            "PIPELINE_EVENT_ID_TTL": str(self.event_id_ttl_seconds),
            "PIPELINE_STATE_WRITES": self.state_writes,
        }
        return env
