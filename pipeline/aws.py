"""The one place that makes boto3 clients: endpoint, region, retries and timeouts."""

from __future__ import annotations

import os
from typing import Any

import boto3
from botocore.config import Config

from pipeline.settings import Settings

_CONFIG = Config(
    retries={"max_attempts": 5, "mode": "standard"},
    connect_timeout=5,
    read_timeout=60,
    max_pool_connections=32,
    tcp_keepalive=True,
)


def client(service: str, settings: Settings | None = None) -> Any:
    """A boto3 client for ``service`` that honours the settings' endpoint and region.

    >>> client("kinesis", Settings(endpoint_url="http://127.0.0.1:4566")).meta.endpoint_url
    'http://127.0.0.1:4566'
    """
    settings = settings or Settings.from_env()
    kwargs: dict[str, Any] = {"region_name": settings.region, "config": _CONFIG}
    if settings.endpoint_url:
        kwargs["endpoint_url"] = settings.endpoint_url
        # The local stack accepts any credentials; never let a laptop's real ones leak to it.
        if not os.environ.get("AWS_ACCESS_KEY_ID"):
            kwargs["aws_access_key_id"] = "testing"
            kwargs["aws_secret_access_key"] = "testing"
    return boto3.session.Session().client(service, **kwargs)
