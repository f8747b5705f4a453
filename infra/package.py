"""Builds the Lambda artifacts: ``build/function.zip`` and ``build/layer.zip``.

The function zip holds only the modules the two handlers import (followed through the import
graph of ``pipeline`` and ``consumers``) plus the Avro schemas. The layer is built the way AWS
documents for Python: ``pip install --target python/`` for the Lambda platform (manylinux wheels
for the runtime's Python), then zipped; boto3 is left out because the runtime provides it.

Both zips are deterministic (sorted entries, fixed timestamps and permissions, no bytecode), so
building twice gives the same SHA-256 and Terraform only publishes a new version on real changes.

    python -m infra.package            # both, into build/
    python infra/package.py --only function
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HANDLERS = ("consumers.lake_writer.handler", "consumers.state_writer.handler")
PACKAGES = ("pipeline", "consumers")
DATA_GLOBS = ("pipeline/schemas/*.avsc",)
# Provided by the Lambda Python runtime: never shipped in the layer.
RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
# Lambda quotas: 50 MB zipped for a direct upload, 250 MB unzipped for function plus layers.
MAX_ZIPPED = 50 * 1024 * 1024
MAX_UNZIPPED = 250 * 1024 * 1024
# The earliest time a zip entry can carry: fixed, so the bytes do not depend on the checkout.
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
SKIP_DIRS = {"__pycache__"}
SKIP_SUFFIXES = (".pyc", ".pyo")


class PackageError(Exception):
    """A build step failed; the message says what and what to do."""


@dataclass(frozen=True, slots=True)
class Artifact:
    """A built zip: where, how big (zipped and unzipped), its SHA-256 and entry count."""

    path: Path
    size: int
    unzipped: int
    sha256: str
    entries: int

    def describe(self) -> str:
        """One line for the build log."""
        rel = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return (
            f"{rel}: {self.size / 1e6:.2f} MB zipped, {self.unzipped / 1e6:.2f} MB unzipped, "
            f"{self.entries} files, sha256 {self.sha256}"
        )


def deterministic_zip(files: Iterable[tuple[str, Path]], out: Path) -> Artifact:
    """Zip ``(archive name, source path)`` pairs in name order with fixed times and modes."""
    entries = sorted(files)
    names = [n for n, _ in entries]
    if len(set(names)) != len(names):
        raise PackageError(f"duplicate entries in {out.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    unzipped = 0
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name, src in entries:
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.create_system = 3  # unix, so the mode bits below are honoured
            executable = os.access(src, os.X_OK) and not src.suffix
            info.external_attr = ((0o755 if executable else 0o644) | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = src.read_bytes()
            unzipped += len(data)
            z.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    tmp.replace(out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    return Artifact(out, out.stat().st_size, unzipped, digest, len(entries))


# -- function ------------------------------------------------------------------------------------


def _module_path(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _imports(path: Path, module: str) -> set[str]:
    """Modules of our packages that ``path`` imports (anywhere in the file, lazy ones included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                base_parts = parts if is_pkg else parts[:-1]
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            # ``from pkg import mod`` may name a submodule.
            found.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
    return {m for m in found if m.split(".")[0] in PACKAGES}


def function_modules(root: Path = ROOT, entry_points: Sequence[str] = HANDLERS) -> dict[str, Path]:
    """Every module the handlers reach through imports, with its parent packages."""
    todo = list(entry_points)
    seen: dict[str, Path] = {}
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        path = _module_path(root, module)
        if path is None:
            if module in entry_points:
                raise PackageError(f"handler module {module} not found under {root}")
            continue  # ``from pkg import name`` where name is not a module
        seen[module] = path
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        todo.extend(_imports(path, module))
    return seen


def function_files(root: Path = ROOT) -> list[tuple[str, Path]]:
    """Archive name → source of every file the function zip holds."""
    files = {p.relative_to(root).as_posix(): p for p in function_modules(root).values()}
    for pattern in DATA_GLOBS:
        for p in root.glob(pattern):
            files[p.relative_to(root).as_posix()] = p
    return sorted(files.items())


def build_function(out: Path, root: Path = ROOT) -> Artifact:
    """``function.zip``: the handlers' modules and the schemas, at the zip's root."""
    return deterministic_zip(function_files(root), out)


# -- layer ---------------------------------------------------------------------------------------


def layer_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The project's runtime dependencies, less what the Lambda runtime provides."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    keep = []
    for dep in deps:
        name = re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0].strip().lower()
        if name not in RUNTIME_PROVIDED:
            keep.append(dep)
    return keep


def pip_install_layer(
    target: Path,
    requirements: Sequence[str],
    python_version: str = "3.12",
    architecture: str = "x86_64",
    wheelhouse: Path | None = None,
) -> None:
    """``pip install --target`` the requirements as wheels for the Lambda platform."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--target",
        str(target),
        "--platform",
        PLATFORMS[architecture],
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--only-binary=:all:",
    ]
    if wheelhouse is not None:
        cmd += ["--no-index", "--find-links", str(wheelhouse)]
    cmd += list(requirements)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise PackageError(
            f"pip could not install {', '.join(requirements)} as {PLATFORMS[architecture]} wheels for "
            f"CPython {python_version}:\n{tail}\n"
            "Without access to PyPI, download the wheels elsewhere (pip download --only-binary=:all: "
            f"--platform {PLATFORMS[architecture]} --python-version {python_version} -d wheels/ ...) "
            "and pass --wheelhouse wheels/. A layer built for this machine's platform would not load "
            "on Lambda, so there is no such fallback."
        )


def layer_files(site: Path) -> list[tuple[str, Path]]:
    """Archive name (under ``python/``) → source of the installed files, without bytecode or boto3."""
    files = []
    for p in sorted(site.rglob("*")):
        if not p.is_file() or p.suffix in SKIP_SUFFIXES or SKIP_DIRS & set(p.parts):
            continue
        rel = p.relative_to(site)
        top = rel.parts[0].split("-")[0].lower()
        if top in RUNTIME_PROVIDED or top == "bin":
            continue
        files.append((f"python/{rel.as_posix()}", p))
    return files


def build_layer(
    out: Path,
    requirements: Sequence[str] | None = None,
    python_version: str = "3.12",
    architecture: str = "x86_64",
    wheelhouse: Path | None = None,
) -> Artifact:
    """``layer.zip``: the dependencies under ``python/``, as Lambda's Python runtimes expect."""
    reqs = list(requirements) if requirements is not None else layer_requirements()
    with tempfile.TemporaryDirectory(prefix="layer-") as tmp:
        site = Path(tmp) / "python"
        pip_install_layer(site, reqs, python_version, architecture, wheelhouse)
        art = deterministic_zip(layer_files(site), out)
    if art.size > MAX_ZIPPED or art.unzipped > MAX_UNZIPPED:
        raise PackageError(
            f"{out.name} is {art.size / 1e6:.1f} MB zipped / {art.unzipped / 1e6:.1f} MB unzipped: over "
            "Lambda's 50 MB (direct upload) / 250 MB (unzipped) quotas; trim the dependencies"
        )
    return art


def main(argv: Sequence[str] | None = None) -> int:
    """Build the artifacts and print their sizes and SHA-256."""
    ap = argparse.ArgumentParser(description="Build build/function.zip and build/layer.zip for Lambda.")
    ap.add_argument("--out", type=Path, default=ROOT / "build", help="output folder (build/)")
    ap.add_argument("--only", choices=("function", "layer"), help="build just one of them")
    ap.add_argument("--python-version", default="3.12", help="Lambda runtime's Python (3.12)")
    ap.add_argument("--architecture", choices=sorted(PLATFORMS), default="x86_64")
    ap.add_argument("--wheelhouse", type=Path, help="install the layer offline from this wheel folder")
    args = ap.parse_args(argv)
    try:
        built = []
        if args.only in (None, "function"):
            built.append(build_function(args.out / "function.zip"))
        if args.only in (None, "layer"):
            built.append(
                build_layer(
                    args.out / "layer.zip",
                    python_version=args.python_version,
                    architecture=args.architecture,
                    wheelhouse=args.wheelhouse,
                )
            )
    except PackageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for art in built:
        print(art.describe())
    total = sum(a.unzipped for a in built)
    if len(built) == 2:
        print(f"function + layer unzipped: {total / 1e6:.2f} MB of Lambda's 250 MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
