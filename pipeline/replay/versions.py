"""Output versions of a reprocess: a new lake prefix, state table and checkpoint namespace.

A reprocess never writes where the current version lives. Its consumers run with the variables
``consumers.core.app.build`` reads pointed at the new version, so the same handler code writes
``events/<name>/…``, a state table of its own, and checkpoints under ``<consumer>-<name>``.
"""

from __future__ import annotations

import posixpath
import re
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from pipeline.replay.errors import ReplayError
from pipeline.settings import Settings

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,47}")


@dataclass(frozen=True, slots=True)
class OutputVersion:
    """Where a reprocess writes, and under which checkpoint namespace."""

    name: str
    lake_prefix: str
    state_table: str
    raw_prefix: str

    def namespace(self, consumer: str) -> str:
        """The consumer name (checkpoint and event-id namespace) of this version."""
        return f"{consumer}-{self.name}"

    def environment(self, consumer: str) -> dict[str, str]:
        """Variables that point a consumer function at this version."""
        return {
            "PIPELINE_CONSUMER": self.namespace(consumer),
            "PIPELINE_LAKE_PREFIX": self.lake_prefix,
            "PIPELINE_STATE_TABLE": self.state_table,
            # Records archived while reprocessing stay apart from the live archive.
            "PIPELINE_RAW_PREFIX": self.raw_prefix,
        }


def output_version(
    settings: Settings, name: str, lake_prefix: str | None = None, state_table: str | None = None
) -> OutputVersion:
    """The version ``name``: ``events/<name>``, ``<state table>-<name>`` unless given otherwise."""
    if not _NAME.fullmatch(name or ""):
        raise ReplayError(
            f"--output-version {name!r}: use 1 to 48 letters, digits, '.', '_' or '-' (e.g. v2)"
        )
    parent = posixpath.dirname(settings.lake_prefix.rstrip("/"))
    lake = (lake_prefix or (f"{parent}/{name}" if parent else name)).rstrip("/")
    table = state_table or f"{settings.state_table}-{name}"
    raw = f"{settings.raw_prefix.rstrip('/')}-reprocess-{name}"
    if lake == settings.lake_prefix.rstrip("/") or lake.startswith(settings.lake_prefix.rstrip("/") + "/"):
        raise ReplayError(
            f"lake prefix {lake!r} is (inside) the current version {settings.lake_prefix!r}; "
            f"a reprocess needs a new --output-version or --lake-prefix"
        )
    if table == settings.state_table:
        raise ReplayError(f"state table {table!r} is the current one; choose another --state-table")
    return OutputVersion(name, lake, table, raw)


def table_exists(ddb: Any, name: str) -> bool:
    """True when the DynamoDB table exists."""
    try:
        ddb.describe_table(TableName=name)
        return True
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            return False
        raise


def ensure_table_like(ddb: Any, like: str, name: str, timeout: float = 60.0) -> bool:
    """Create table ``name`` with the key schema of ``like`` unless it exists; True if created."""
    if table_exists(ddb, name):
        return False
    try:
        src = ddb.describe_table(TableName=like)["Table"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            raise ReplayError(
                f"state table {like!r} does not exist, so {name!r} cannot copy its keys"
            ) from None
        raise
    keys = {k["AttributeName"] for k in src["KeySchema"]}
    ddb.create_table(
        TableName=name,
        KeySchema=src["KeySchema"],
        AttributeDefinitions=[a for a in src["AttributeDefinitions"] if a["AttributeName"] in keys],
        BillingMode="PAY_PER_REQUEST",
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ddb.describe_table(TableName=name)["Table"]["TableStatus"] == "ACTIVE":
            return True
        time.sleep(0.5)
    raise ReplayError(f"table {name!r} did not become ACTIVE within {timeout:.0f} s")
