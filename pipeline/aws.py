"""The one place that makes AWS clients: endpoint, region, retries and timeouts.

Clients come from botocore's session directly: they are the same objects boto3 returns, and
leaving boto3 out saves a Lambda cold start the import of s3transfer (a third of boto3's import
time), which nothing here uses.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import botocore.session
from botocore.config import Config

from pipeline.settings import Settings

_CONFIG = Config(
    retries={"max_attempts": 5, "mode": "standard"},
    connect_timeout=5,
    read_timeout=60,
    max_pool_connections=32,
    tcp_keepalive=True,
)


_SESSION: botocore.session.Session | None = None
_LOCK = threading.Lock()


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
    global _SESSION
    # One session per process: it caches the loaded service models, which makes every client
    # after the first cheap (a Lambda cold start builds several). Sessions are not thread-safe,
    # so clients are made under a lock; the clients themselves are.
    with _LOCK:
        if _SESSION is None:
            _SESSION = botocore.session.get_session()
        return _SESSION.create_client(service, **kwargs)
