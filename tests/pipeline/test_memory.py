"""Large blocks freed go back to the system once ``release_large_blocks`` has run (glibc)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Four threads each allocate and free ~600 KB blocks, with small objects made in between and kept.
_SCRIPT = """
import os, sys, threading
from pipeline.memory import release_large_blocks

def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS"))

if sys.argv[1] == "on":
    assert release_large_blocks()
kept = []

def work():
    small = []
    for _ in range(3):
        big = []
        for i in range(100):
            big.append(os.urandom(1) * (600_000 + i))
            small.append(bytes(2000))
        del big
    kept.append(small)

before = rss()
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(rss() - before)
"""


def _growth_mb(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_large_blocks_are_given_back_where_by_default_they_are_kept() -> None:
    assert _growth_mb("off") > 60  # glibc's default: heaps keep what the threads freed
    assert _growth_mb("on") < 20
