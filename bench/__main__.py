"""Run every benchmark module in this folder (or those named on the command line).

Each module's ``main()`` prints its figures with the baseline measured in the same run and returns
non-zero when a target is missed. The whole output is also written to a report folder,
``reports/bench-<timestamp>/README.md`` (``BENCH_REPORTS`` to change the parent folder).
"""

from __future__ import annotations

import importlib
import io
import os
import pkgutil
import sys
import time
from pathlib import Path
from typing import TextIO

# Long runs with their own make target, left out of a plain `make bench`.
SEPARATE = {"load"}


class _Tee(io.TextIOBase):
    """Writes to the terminal and keeps a copy for the report."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.copy = io.StringIO()

    def write(self, text: str) -> int:
        self.out.write(text)
        return self.copy.write(text)

    def flush(self) -> None:
        self.out.flush()


def main(argv: list[str]) -> int:
    """Import ``bench.<name>`` for each module and call its ``main()``; report failures."""
    # Leading words name modules; options after them belong to the (single) module named.
    names = []
    for arg in argv:
        if arg.startswith("-"):
            break
        names.append(arg)
    names = names or sorted(
        m.name
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if not m.name.startswith("_") and m.name not in SEPARATE
    )
    failed = []
    sections: list[tuple[str, float, int, str]] = []
    real_stdout = sys.stdout
    for name in names:
        tee = _Tee(real_stdout)
        sys.stdout = tee
        t0 = time.monotonic()
        rc = 0
        try:
            print(f"\n=== bench.{name} ===", flush=True)
            rc = importlib.import_module(f"bench.{name}").main() or 0
            print(f"--- bench.{name}: {time.monotonic() - t0:.1f} s", flush=True)
        except KeyboardInterrupt:
            return 130
        finally:
            sys.stdout = real_stdout
        sections.append((name, time.monotonic() - t0, rc, tee.copy.getvalue()))
        if rc:
            failed.append(name)
    report = _write_report(sections)
    if failed:
        print(f"\nbenchmarks below target: {', '.join(failed)}")
    print(f"report: {report}")
    return 1 if failed else 0


def _write_report(sections: list[tuple[str, float, int, str]]) -> Path:
    folder = Path(os.environ.get("BENCH_REPORTS", "reports")) / time.strftime("bench-%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Benchmark report",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} on {os.cpu_count()} cores.",
        "",
        "| benchmark | seconds | targets |",
        "|---|---|---|",
    ]
    lines += [f"| `bench.{n}` | {s:.1f} | {'below target' if rc else 'met'} |" for n, s, rc, _ in sections]
    for name, _, _, text in sections:
        lines += ["", f"## bench.{name}", "", "```", text.strip(), "```"]
    path = folder / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
