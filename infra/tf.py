"""Running Terraform offline: find the provider mirror, write a CLI config that uses it, run commands.

The public registry is out of reach on the project's machines; the AWS provider sits in a local
filesystem mirror (the folder holding ``registry.terraform.io/hashicorp/aws/``), which Terraform
uses through ``provider_installation { filesystem_mirror { ... } }`` in the file named by
``TF_CLI_CONFIG_FILE``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
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
    proc = subprocess.run(
        ["terraform", *args], cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"terraform {' '.join(args)} failed ({proc.returncode}) in {cwd}:\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc
