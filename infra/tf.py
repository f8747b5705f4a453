"""Running Terraform offline: find the provider mirror, write a CLI config that uses it, run commands.

The public registry is out of reach on the project's machines; the AWS provider sits in a local
filesystem mirror (the folder holding ``registry.terraform.io/hashicorp/aws/``), which Terraform
uses through ``provider_installation { filesystem_mirror { ... } }`` in the file named by
``TF_CLI_CONFIG_FILE``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

# Usual places first; the bounded search below finds the rest.
CANDIDATES = (
    "/opt/tf-plugins",
    "~/.terraform.d/plugins",
    "~/.local/share/terraform/plugins",
    "/usr/local/share/terraform/plugins",
    "/usr/share/terraform/plugins",
)
PROVIDER = Path("registry.terraform.io") / "hashicorp" / "aws"


def find_mirror() -> Path | None:
    """The folder holding ``registry.terraform.io/hashicorp/aws`` (``TF_PROVIDER_MIRROR`` wins)."""
    explicit = os.environ.get("TF_PROVIDER_MIRROR")
    if explicit:
        return Path(explicit) if (Path(explicit) / PROVIDER).is_dir() else None
    for c in CANDIDATES:
        p = Path(c).expanduser()
        if (p / PROVIDER).is_dir():
            return p
    try:
        out = subprocess.run(
            ["find", "/", "-maxdepth", "5", "-path", "*registry.terraform.io/hashicorp", "-prune"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        hashicorp = Path(line.strip())
        if (hashicorp / "aws").is_dir():
            return hashicorp.parent.parent
    return None


def terraform_binary() -> str | None:
    """``terraform`` on the PATH, or None."""
    return shutil.which("terraform")


def write_cli_config(folder: Path, mirror: Path) -> Path:
    """A CLI config that installs providers from ``mirror`` only; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "terraformrc"
    path.write_text(f'provider_installation {{\n  filesystem_mirror {{\n    path = "{mirror}"\n  }}\n}}\n')
    return path


def environment(cli_config: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment for Terraform: the CLI config, no prompts, no colour, no telemetry."""
    env = dict(os.environ)
    env.update(
        {
            "TF_CLI_CONFIG_FILE": str(cli_config),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
        }
    )
    env.update(extra or {})
    return env


def run(
    args: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``terraform <args>`` in ``cwd``; raise with its output when it fails."""
    started = time.monotonic()
    proc = subprocess.run(
        ["terraform", *args], cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout
    )
    slow = [
        line for line in proc.stdout.splitlines() if re.search(r"complete after (\d{2,}|[1-9]\d*m)", line)
    ]
    print(f"terraform {args[0]}: {time.monotonic() - started:.1f} s", *slow, sep="\n  ", flush=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"terraform {' '.join(args)} failed ({proc.returncode}) in {cwd}:\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


@contextmanager
def shared_provider(
    env_dir: Path, env: Mapping[str, str], start_timeout: float = 120
) -> Iterator[dict[str, str]]:
    """Run the initialised AWS provider once for every command inside the block.

    Each Terraform command otherwise starts the provider (and loads its very large schema) two or
    three times; with ``TF_REATTACH_PROVIDERS`` every command reuses this one process. Yields the
    environment to run Terraform with; falls back to the plain one if the provider does not start.
    Meant for the local stack's endpoints (plain HTTP), not for AWS itself.
    """
    found = sorted((env_dir / ".terraform" / "providers" / PROVIDER).glob("*/*/terraform-provider-aws*"))
    if not found:
        yield dict(env)
        return
    # A provider configured twice in one process fails on a custom CA bundle ("unable to add
    # custom RootCAs HTTPClient"); the shared one serves plain-HTTP endpoints, so it needs none.
    provider_env = {k: v for k, v in env.items() if k != "AWS_CA_BUNDLE"}
    proc = subprocess.Popen(
        [str(found[-1]), "-debug"],
        env=provider_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        reattach = None
        deadline = time.monotonic() + start_timeout
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            m = re.search(r"TF_REATTACH_PROVIDERS='(.+)'", line)
            if m:
                reattach = json.loads(m.group(1))
                break
        if reattach is None:
            yield dict(env)
        else:
            yield {**env, "TF_REATTACH_PROVIDERS": json.dumps(reattach)}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
