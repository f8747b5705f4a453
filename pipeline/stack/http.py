"""HTTP/1.1 keep-alive for the embedded stack's server.

Werkzeug's development server closes every connection after one response (and then waits up to
10 ms draining the socket), so each AWS call paid a TCP connect, a new server thread and that wait.
AWS endpoints keep connections open and botocore pools them. This request handler keeps moto's
environ (``MotoRequestHandler.make_environ``), reads each request body whole before calling the
app (so the connection stays in step whatever the app reads), buffers the app's answer and sends it
with its length, then waits on the same connection for the next request.
"""

from __future__ import annotations

import io
import socket
import sys
import traceback
from typing import Any

from moto.moto_server.werkzeug_app import MotoRequestHandler

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class KeepAliveHandler(MotoRequestHandler):  # type: ignore[misc]
    """One connection, many requests: moto's environ, whole bodies, explicit lengths."""

    protocol_version = "HTTP/1.1"
    timeout = 300  # an idle connection is closed after this many seconds; botocore reconnects

    def setup(self) -> None:
        super().setup()
        # Small answers go out at once rather than waiting on the client's delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def run_wsgi(self) -> None:
        if self.headers.get("Expect", "").lower().strip() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        environ = self.make_environ()
        if environ.get("wsgi.input_terminated"):
            body = environ["wsgi.input"].read()  # dechunked by werkzeug's reader
        else:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = self.rfile.read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(body)

        answer: dict[str, Any] = {}
        written: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answer["status"], answer["headers"] = status, headers
            return written.append

        try:
            result = self.server.app(environ, start_response)
            try:
                written.extend(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
        except Exception:
            self.server.log("error", "Error on request:\n%s", traceback.format_exc())
            answer = {"status": "500 Internal Server Error", "headers": [("Content-Type", "text/plain")]}
            written = [b"Internal Server Error"]
            self.close_connection = True
        out = b"".join(written)
        code, _, reason = answer["status"].partition(" ")
        status = int(code)
        self.send_response(status, reason)
        declared = None
        for name, value in answer["headers"]:
            lower = name.lower()
            if lower == "content-length":
                declared = value
            if lower not in _HOP_BY_HOP:
                self.send_header(name, value)
        no_body = self.command == "HEAD" or status in (204, 304) or 100 <= status < 200
        if no_body:
            if declared is not None:
                self.send_header("Content-Length", declared)
        else:
            self.send_header("Content-Length", str(len(out)))
        if self.close_connection:
            self.send_header("Connection", "close")
        pending: list[bytes] = self._headers_buffer  # written by send_header, flushed here
        pending.append(b"\r\n")
        if not no_body and out:
            pending.append(out)  # headers and body in one write
        self.wfile.write(b"".join(pending))
        pending.clear()
        self.wfile.flush()

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        # An idle keep-alive connection timing out is not an error worth a log line.
        if args and "timed out" in str(args[0]):
            return
        print(format % args, file=sys.stderr)
