"""Run every benchmark module in this folder (or those named on the command line)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path

# Long runs with their own make target, left out of a plain `make bench`.
SEPARATE = {"load"}


def main(argv: list[str]) -> int:
    """Import ``bench.<name>`` for each module and call its ``main()``; report failures."""
    # Leading words name modules; options after them belong to the (single) module named.
    names = []
    for arg in argv:
        if arg.startswith("-"):
            break
        names.append(arg)
    names = names or sorted(
        m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_")
    )
    failed = []
    for name in names:
        print(f"\n=== bench.{name} ===", flush=True)
        t0 = time.monotonic()
        try:
            rc = importlib.import_module(f"bench.{name}").main()
        except KeyboardInterrupt:
            return 130
        if rc:
            failed.append(name)
        print(f"--- bench.{name}: {time.monotonic() - t0:.1f} s", flush=True)
    if failed:
        print(f"\nbenchmarks below target: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
