"""Give freed large blocks back to the system, for the long-running local processes.

glibc's ``malloc`` serves blocks of 128 KiB and more with their own mappings, returned to the system
when freed, but it raises that threshold to the size of each such block freed (up to 32 MiB). After
the first few, a process that keeps allocating and freeing blocks of a few hundred KiB to a few MiB
(the ESM runner: GetRecords bodies of up to 2 MB, record texts of ~150 KB, pickled Lambda events of
up to 6 MB) takes them from its heaps instead, and a heap can only shrink from its top: one small
object allocated after a large block pins the memory below it. With one heap (arena) per thread
that adds up, and the resident size climbs with the traffic though the live data does not.

``release_large_blocks`` fixes the threshold (which turns off the raising) and caps the arenas.
"""

from __future__ import annotations

import ctypes
import sys

# mallopt parameters, from glibc's <malloc.h>.
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

LARGE_BLOCK = 128 * 1024  # glibc's default threshold, kept fixed


def release_large_blocks(threshold: int = LARGE_BLOCK, arenas: int = 2) -> bool:
    """Map blocks of ``threshold`` bytes and more on their own, so that they go back to the system
    when freed, and use at most ``arenas`` heaps. Call it before starting threads. Returns False,
    changing nothing, where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # another C library (musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(mallopt(_M_ARENA_MAX, arenas))
