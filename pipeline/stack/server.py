"""The embedded AWS endpoint: moto's server app, served on loopback, with moto's own Lambda
execution switched off (our ESM runner invokes the handlers).

Run as ``python -m pipeline.stack.server --port 4566``.
"""

from __future__ import annotations

import argparse
import sys
import threading
from typing import Any


def build_app() -> Any:
    """The WSGI app: every AWS API moto serves, without moto invoking functions itself."""
    from moto.awslambda.models import LambdaBackend
    from moto.core.config import default_user_config
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    default_user_config["lambda"]["use_docker"] = False
    default_user_config["batch"]["use_docker"] = False

    # moto would build and "invoke" a Lambda event for every record put to a stream that has a
    # mapping; the local ESM runner does that job, with AWS semantics, so skip the per-put work.
    def _no_kinesis_push(self: Any, *args: Any, **kwargs: Any) -> None:
        return None

    LambdaBackend.send_kinesis_message = _no_kinesis_push  # type: ignore[method-assign]
    return DomainDispatcherApplication(create_backend_app)


class Server:
    """A stack server in a thread of this process (tests) — ``serve`` runs one in the foreground."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.moto_server.threaded_moto_server import MotoRequestHandler
        from werkzeug.serving import make_server

        self._server = make_server(host, port, build_app(), threaded=True, request_handler=MotoRequestHandler)
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint_url(self) -> str:
        """``http://host:port`` of the server."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Server:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop serving and join the thread."""
        self._server.shutdown()
        if self._thread.is_alive():
            self._thread.join()


def main(argv: list[str] | None = None) -> int:
    """Serve the embedded stack in the foreground."""
    parser = argparse.ArgumentParser(description="Serve the embedded AWS stack on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    args = parser.parse_args(argv)
    try:
        server = Server(args.host, args.port)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"embedded stack listening on {server.endpoint_url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
