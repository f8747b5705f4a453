"""Start-up of a long-lived process (a Lambda execution environment) without the cyclic collector.

A consumer's cold start imports botocore, urllib3 and fastavro and builds its clients: everything
it allocates lives as long as the process, so the collections that run meanwhile (about 70 of them,
15-25 ms of a 300 ms cold start) free nothing. ``collector_paused`` holds them off for the start-up
and then freezes what it made, so later full collections do not walk it either (``gc.freeze``).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_collection() -> Iterator[None]:
    """Run the block with the cyclic collector off, then restore it (unless it was off already).

    For work that keeps what it allocates until it ends and makes no cycles worth collecting
    meanwhile (decoding a batch, processing one): collections during it only rescan live objects.
    Nests: an inner pause leaves the collector off for the outer one to restore.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block with the cyclic collector off; afterwards freeze what exists and restore it.

    Nests: an inner pause leaves the collector off for the outer one to restore.

    Example:
        >>> with collector_paused():
        ...     processor = build("lake-writer", make_sink)
    """
    with no_collection():
        try:
            yield
        finally:
            gc.freeze()
