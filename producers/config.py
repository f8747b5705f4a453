"""The producer's knobs, named after the KPL's where they mean the same thing."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import ConfigError

MIB = 1024 * 1024
SHARD_BYTES_PER_SEC = MIB  # per-shard write limits of Kinesis Data Streams
SHARD_RECORDS_PER_SEC = 1000


@dataclass(frozen=True, slots=True)
class ProducerConfig:
    """Settings of one ``KinesisProducer``; every field has the KPL's meaning and a safe default.

    >>> ProducerConfig(record_max_buffered_time=0.05).record_ttl
    30.0
    """

    record_max_buffered_time: float = 0.1  # s a user record may wait for company before it is sent
    record_ttl: float = 30.0  # s after put when an unsent record fails with RecordExpired
    max_record_bytes: int = MIB  # the stream's max record size: data + partition key
    aggregation_enabled: bool = True
    aggregation_max_count: int = 4_294_967_295
    # Largest aggregate (None: max_record_bytes). Below half the shard's 1 MiB/s it leaves the
    # shard's burst bucket room for network jitter (see docs/producer.md).
    aggregation_max_bytes: int | None = None
    collection_max_count: int = 500  # PutRecords entries per request
    collection_max_bytes: int = 5 * MIB  # PutRecords bytes per request (10 MiB where allowed)
    rate_limit: float = 1.0  # share of each shard's limits the limiter allows
    shard_bytes_per_sec: int = SHARD_BYTES_PER_SEC
    shard_records_per_sec: int = SHARD_RECORDS_PER_SEC
    max_buffered_bytes: int = 16 * MIB  # bytes between put and settled; put blocks beyond
    put_timeout: float | None = 30.0  # s put blocks for room before BackpressureTimeout
    max_connections: int = 4  # concurrent PutRecords requests
    retry_base_delay: float = 0.1  # s; back-off doubles per attempt, with full jitter
    retry_max_delay: float = 2.0
    shard_map_refresh_interval: float = 60.0  # s between periodic ListShards

    @property
    def aggregate_bytes(self) -> int:
        """The size limit of one aggregated record."""
        return self.aggregation_max_bytes or self.max_record_bytes

    def __post_init__(self) -> None:
        checks = [
            (self.record_max_buffered_time >= 0, "record_max_buffered_time must be >= 0 s"),
            (self.record_ttl > 0, "record_ttl must be > 0 s"),
            (1024 <= self.max_record_bytes <= 10 * MIB, "max_record_bytes must be 1 KiB to 10 MiB"),
            (self.aggregation_max_count >= 1, "aggregation_max_count must be >= 1"),
            (
                self.aggregation_max_bytes is None
                or 64 <= self.aggregation_max_bytes <= self.max_record_bytes,
                "aggregation_max_bytes must be between 64 bytes and max_record_bytes",
            ),
            (1 <= self.collection_max_count <= 500, "collection_max_count must be 1 to 500"),
            (
                self.max_record_bytes <= self.collection_max_bytes <= 10 * MIB,
                "collection_max_bytes must be between max_record_bytes and 10 MiB",
            ),
            (self.rate_limit > 0, "rate_limit must be > 0 (1.0 = the shard limits)"),
            (self.max_buffered_bytes >= self.max_record_bytes, "max_buffered_bytes must hold one record"),
            (self.max_connections >= 1, "max_connections must be >= 1"),
            (
                0 < self.retry_base_delay <= self.retry_max_delay,
                "need 0 < retry_base_delay <= retry_max_delay",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"producer config: {message}")
