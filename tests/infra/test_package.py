"""The Lambda artifacts: the function zip holds what the handlers import and nothing else, and the
zips are byte-for-byte reproducible."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from infra.package import (
    ROOT,
    build_function,
    deterministic_zip,
    function_files,
    layer_files,
    layer_requirements,
)


def test_function_zip_is_reproducible(tmp_path: Path) -> None:
    """Two builds give the same SHA-256, with fixed timestamps and sorted entries."""
    a = build_function(tmp_path / "a.zip")
    b = build_function(tmp_path / "b.zip")
    assert a.sha256 == b.sha256 == hashlib.sha256((tmp_path / "a.zip").read_bytes()).hexdigest()
    with zipfile.ZipFile(a.path) as z:
        infos = z.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}


def test_function_zip_holds_the_handlers_modules_and_schemas_only() -> None:
    """Handlers, their imports and the .avsc schemas; not the stack, the ESM runner, the CLI or tests."""
    names = [n for n, _ in function_files()]
    assert "consumers/lake_writer/handler.py" in names
    assert "consumers/state_writer/handler.py" in names
    assert "pipeline/settings.py" in names
    assert any(n.startswith("pipeline/schemas/") and n.endswith(".avsc") for n in names)
    for excluded in ("pipeline/stack/", "pipeline/esm/", "pipeline/cli.py", "producers/", "tests/", "bench/"):
        assert not any(n.startswith(excluded) for n in names), excluded
    assert not any(n.endswith(".pyc") for n in names)


def test_handlers_import_from_the_function_zip_alone(tmp_path: Path) -> None:
    """Unpacked on its own, the zip imports both handlers without reaching into the checkout."""
    art = build_function(tmp_path / "function.zip")
    task = tmp_path / "task"
    with zipfile.ZipFile(art.path) as z:
        z.extractall(task)
    # The checkout is on sys.path through the editable install: every module of ours must still
    # come from the unpacked folder (the working directory, first on sys.path).
    probe = (
        "import sys\n"
        "import consumers.lake_writer.handler, consumers.state_writer.handler\n"
        "outside = [n for n, m in list(sys.modules.items()) if n.split('.')[0] in ('pipeline', 'consumers')"
        " and not (getattr(m, '__file__', None) or '').startswith(sys.argv[1])]\n"
        "print(outside)\n"
        "sys.exit(1 if outside else 0)\n"
    )
    env = {
        **os.environ,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "PIPELINE_CONSUMER": "lake-writer",
    }
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(task)],
        cwd=task,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_layer_leaves_out_bytecode_and_what_the_runtime_provides(tmp_path: Path) -> None:
    """boto3 and its dependencies, scripts and __pycache__ stay out; everything lands under python/."""
    site = tmp_path / "python"
    for rel in (
        "fastavro/__init__.py",
        "fastavro/_read.cpython-312-x86_64-linux-gnu.so",
        "fastavro/__pycache__/x.cpython-312.pyc",
        "boto3/__init__.py",
        "botocore/__init__.py",
        "bin/fastavro",
        "zstandard-0.25.0.dist-info/RECORD",
    ):
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(rel.encode())
    names = [n for n, _ in layer_files(site)]
    assert names == [
        "python/fastavro/__init__.py",
        "python/fastavro/_read.cpython-312-x86_64-linux-gnu.so",
        "python/zstandard-0.25.0.dist-info/RECORD",
    ]
    a = deterministic_zip(layer_files(site), tmp_path / "a.zip")
    os.utime(site / "fastavro/__init__.py", (0, 0))
    b = deterministic_zip(layer_files(site), tmp_path / "b.zip")
    assert a.sha256 == b.sha256


def test_layer_requirements_are_the_runtime_dependencies_without_boto3() -> None:
    """The layer installs pyproject's dependencies less boto3, which the Lambda runtime has."""
    reqs = layer_requirements(ROOT / "pyproject.toml")
    assert any(r.startswith("fastavro") for r in reqs)
    assert not any(r.lower().startswith(("boto3", "botocore")) for r in reqs)
