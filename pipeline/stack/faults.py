"""Fault injection for the embedded stack: throttle a share of Kinesis and DynamoDB requests.

Enabled with ``PIPELINE_STACK_FAULTS=throttle:0.3`` on the server, or at run time with
``POST /_pipeline/faults`` and a body ``{"throttle": 0.3}`` (``{"throttle": 0}`` turns it off).
The answers are the ones AWS gives when it throttles, so clients exercise their real retry paths.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable
from typing import Any

from pipeline.errors import ConfigError

CONTROL_PATH = "/_pipeline/faults"
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_THROTTLES = {
    "Kinesis_20131202": (
        "application/x-amz-json-1.1",
        "ProvisionedThroughputExceededException",
        "Rate exceeded for shard (injected).",
    ),
    "DynamoDB_20120810": (
        "application/x-amz-json-1.0",
        "com.amazonaws.dynamodb.v20120810#ThrottlingException",
        "Rate of requests exceeds the allowed throughput (injected).",
    ),
}


def parse(spec: str | None) -> float:
    """The throttle share of a ``throttle:<fraction>`` spec (0.0 when empty)."""
    if not spec:
        return 0.0
    kind, _, value = spec.partition(":")
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    if kind != "throttle" or not 0.0 <= share <= 1.0:
        raise ConfigError(f"fault spec {spec!r}: use throttle:<fraction between 0 and 1>")
    return share


class ThrottleInjector:
    """WSGI middleware answering a random share of Kinesis/DynamoDB calls with a throttle error."""

    def __init__(self, app: WsgiApp, share: float, seed: int | None = None) -> None:
        self.app = app
        self.share = share
        self.rng = random.Random(seed)
        self.injected = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == CONTROL_PATH:
            return self._control(environ, start_response)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        service = target.split(".", 1)[0]
        if service in _THROTTLES and self.rng.random() < self.share:
            content_type, code, message = _THROTTLES[service]
            self.injected += 1
            # Drain the body so keep-alive connections stay in sync.
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if length:
                environ["wsgi.input"].read(length)
            body = json.dumps({"__type": code, "message": message}).encode()
            start_response(
                "400 Bad Request", [("Content-Type", content_type), ("Content-Length", str(len(body)))]
            )
            return [body]
        return self.app(environ, start_response)

    def _control(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = json.loads(environ["wsgi.input"].read(length) or b"{}")
            self.share = parse(f"throttle:{body.get('throttle', 0)}")
        out = json.dumps({"throttle": self.share, "injected": self.injected}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
        return [out]


def set_throttle(endpoint_url: str, share: float) -> dict[str, Any]:
    """Ask a running stack server to throttle ``share`` of Kinesis/DynamoDB calls from now on."""
    import urllib.request

    req = urllib.request.Request(
        f"{endpoint_url}{CONTROL_PATH}",
        method="POST",
        data=json.dumps({"throttle": share}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return dict(json.loads(resp.read()))
