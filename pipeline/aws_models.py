"""botocore's service data from a marshal cache, so that a cold start parses no JSON.

A botocore session reads its data from JSON at every cold start: for the consumers' S3 and DynamoDB
clients that is two service models, two endpoint rule sets and ``endpoints.json`` (2.6 MB of JSON,
part of it gzipped), plus a walk of all 400-odd service folders to check that a name is a service.
That was over half of a consumer's cold start. ``CachedLoader`` is botocore's own ``Loader`` with a
cache in front: the first process that needs a piece of data loads it the stock way and writes
what botocore returned to a file in ``marshal`` format, which later processes read back four to
five times faster. The data is the parsed JSON itself (what botocore returned, extras merged,
nothing trimmed), so every operation of every service behaves as with a stock loader; the cache
only changes where the same data comes from.

The cache folder is named after the botocore and Python versions (botocore's data changes only
with its version), so an upgrade never reads stale data and a folder filled on one machine serves
another with the same versions. It lies under ``$PIPELINE_BOTOCORE_CACHE`` (``off`` disables it),
else ``$XDG_CACHE_HOME/kinesis-pipeline``, else ``~/.cache/kinesis-pipeline``. A folder that cannot
be written is only read, so a read-only one can be filled ahead of time, e.g. for a deployment that
ships its own botocore: ``PIPELINE_BOTOCORE_CACHE=dir python -m pipeline.aws_models s3 dynamodb``.

The cache stands aside wherever botocore could find other data than its own: with ``AWS_DATA_PATH``
set or a ``~/.aws/models`` folder present, the session keeps botocore's stock loader.
"""

from __future__ import annotations

import marshal
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import botocore
import botocore.session
from botocore.loaders import Loader, instance_cache

ENV = "PIPELINE_BOTOCORE_CACHE"
# What may appear in a cache file's name: botocore's own service, type and version names. Anything
# else goes to botocore unchanged (it will say what is wrong with it).
_NAME = re.compile(r"^[a-z0-9_][a-z0-9._-]*$")


def cache_dir() -> Path | None:
    """The cache folder for the installed botocore and Python, or None when the cache is off.

    >>> cache_dir().name  # doctest: +SKIP
    'botocore-1.44.8-py311-m4'
    """
    root = os.environ.get(ENV)
    if root is not None and root.strip().lower() in ("", "0", "off", "false", "no"):
        return None
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "kinesis-pipeline")
    py = f"{sys.version_info.major}{sys.version_info.minor}"
    return Path(root) / f"botocore-{botocore.__version__}-py{py}-m{marshal.version}"


def _plain(value: Any) -> Any:
    """``value`` with botocore's OrderedDicts as dicts (same keys, same order), which marshal writes."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class CachedLoader(Loader):
    """botocore's ``Loader``, reading what it loaded before from ``marshal`` files under ``root``.

    Only the default search paths are used (the caller checks that nothing else could be found),
    so a file written by one process holds exactly what another process would load.

    Example:
        >>> session = botocore.session.get_session()
        >>> session.register_component("data_loader", CachedLoader(cache_dir()))
    """

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self._writable: bool | None = None
        # Which loads were served from the cache and which were written to it (tests and ``main``).
        self.hits: list[str] = []
        self.stored: list[str] = []

    @instance_cache
    def load_service_model(self, service_name: str, type_name: str, api_version: str | None = None) -> Any:
        """botocore's ``load_service_model``; its result (extras merged) comes from the cache."""
        parts = (service_name, api_version or "latest", type_name)
        if not all(isinstance(p, str) and _NAME.match(p) for p in parts):
            return super().load_service_model(service_name, type_name, api_version)
        name = "/".join(parts)
        cached = self._read(name)
        if cached is not None:
            return cached
        # The stock method validates the name, finds the latest version and merges the extras; a
        # missing model raises here and nothing is cached.
        model = super().load_service_model(service_name, type_name, api_version)
        self._write(name, model)
        return model

    @instance_cache
    def load_data_with_path(self, name: str) -> Any:
        """botocore's ``load_data_with_path``; top-level data (endpoints, partitions, ...) is cached.

        Service files are left to ``load_service_model``, which caches them after the extras are
        merged in (and the merge changes the dict this method returned).
        """
        if not (isinstance(name, str) and _NAME.match(name)):
            return super().load_data_with_path(name)
        cached = self._read(name)
        if cached is not None:
            data, relative = cached
            return data, os.path.join(self.BUILTIN_DATA_PATH, relative)
        data, path = super().load_data_with_path(name)
        # Only botocore's own folder is searched (see ``applies``); the path is kept relative to
        # it, so that a folder filled elsewhere names this installation's file.
        relative = os.path.relpath(path, self.BUILTIN_DATA_PATH)
        if not relative.startswith(os.pardir):
            self._write(name, [data, relative])
        return data, path

    def _file(self, name: str) -> Path:
        return self.root / f"{name}.marshal"

    def _read(self, name: str) -> Any:
        try:
            raw = self._file(name).read_bytes()
        except OSError:
            return None
        try:
            data = marshal.loads(raw)
        except (EOFError, ValueError, TypeError):
            return None  # a damaged file: loaded the stock way and written again
        self.hits.append(name)
        return data

    def _write(self, name: str, data: Any) -> None:
        # Written once per botocore version; where that fails (a read-only or full disk, a Lambda
        # file system) the data was loaded anyway, and only later starts lose the speed.
        if self._writable is None:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                self._writable = os.access(self.root, os.W_OK)
            except OSError:
                self._writable = False
        if not self._writable:
            return
        try:
            payload = marshal.dumps(_plain(data))
        except ValueError:
            return  # not plain JSON data after all: left to botocore every time
        target = self._file(name)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Many processes may write the same file at once (test workers, Lambda workers): each
            # writes a file of its own and renames it, so a reader never sees half a file.
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(payload)
                os.replace(tmp, target)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:
            self._writable = False
            return
        self.stored.append(name)


def applies(session: botocore.session.Session) -> bool:
    """Whether botocore would search only its own data (no ``AWS_DATA_PATH``, no ``~/.aws/models``)."""
    return not session.get_config_variable("data_path") and not os.path.isdir(Loader.CUSTOMER_DATA_PATH)


def install(session: botocore.session.Session) -> CachedLoader | None:
    """Give ``session`` a ``CachedLoader`` when the cache is on and applies; the loader or None."""
    root = cache_dir()
    if root is None or not applies(session):
        return None
    loader = CachedLoader(root)
    session.register_component("data_loader", loader)
    return loader


def main(argv: list[str] | None = None) -> int:
    """Fill the cache with what clients of the named services load (for read-only deployments)."""
    import argparse  # the command line only; a cold start does without its import

    parser = argparse.ArgumentParser(prog="python -m pipeline.aws_models", description=main.__doc__)
    parser.add_argument("services", nargs="+", help="botocore service names, e.g. s3 dynamodb")
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args(argv)
    session = botocore.session.get_session()
    loader = install(session)
    if loader is None:
        print(f"cache off or not applicable ({ENV}, AWS_DATA_PATH, ~/.aws/models)", file=sys.stderr)
        return 1
    for service in args.services:
        session.create_client(
            service, region_name=args.region, aws_access_key_id="x", aws_secret_access_key="x"
        )
    print(f"{loader.root}: {len(loader.stored)} written, {len(loader.hits)} already there")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
