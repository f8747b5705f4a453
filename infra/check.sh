#!/usr/bin/env bash
# Static checks of the Terraform in infra/terraform, as CI runs them:
#   1. terraform fmt -check -recursive
#   2. terraform init -backend=false + validate, for every environment, offline through the
#      provider mirror (the folder holding registry.terraform.io/hashicorp/aws; TF_PROVIDER_MIRROR
#      names it, else it is searched for) unless TF_CLI_CONFIG_FILE names an existing file
#   3. checkov with zero failed checks (each skip is justified inline in the .tf files)
#
# Usage: infra/check.sh            (from anywhere; exits non-zero on the first failing step)
#        SKIP_CHECKOV=1 infra/check.sh    (steps 1-2 only)
# checkov lives in its own virtualenv (.venv-checkov, created on first use): it pins many
# packages that would clash with the project's.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TF_DIR=infra/terraform
CHECKOV_VERSION=${CHECKOV_VERSION:-3.3.30}
CHECKOV_VENV=${CHECKOV_VENV:-$ROOT/.venv-checkov}
PYTHON=${PYTHON:-python3}

step() { printf '\n== %s\n' "$*"; }

command -v terraform >/dev/null || { echo "error: terraform is not on the PATH (Terraform >= 1.5 is needed)" >&2; exit 2; }

# shellcheck source=infra/lib.sh
source infra/lib.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Providers: the CLI config named by TF_CLI_CONFIG_FILE if that file exists, else the local mirror
# (the folder holding registry.terraform.io/hashicorp/aws), else the public registry.
use_provider_mirror "$work"
export TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1

step "terraform fmt -check -recursive $TF_DIR"
terraform fmt -check -recursive -diff "$TF_DIR"

for env_dir in "$TF_DIR"/envs/*/; do
  env_name=$(basename "$env_dir")
  step "terraform init -backend=false && validate: envs/$env_name"
  # .terraform goes to the temp folder, so a check never touches a developer's initialised env.
  export TF_DATA_DIR=$work/$env_name
  terraform -chdir="$env_dir" init -backend=false -input=false -no-color >"$work/$env_name-init.log" \
    || { cat "$work/$env_name-init.log"; exit 1; }
  terraform -chdir="$env_dir" validate -no-color
  unset TF_DATA_DIR
done

if [[ ${SKIP_CHECKOV:-0} == 1 ]]; then
  echo "checkov skipped (SKIP_CHECKOV=1)"
  exit 0
fi

step "checkov $CHECKOV_VERSION"
if ! "$CHECKOV_VENV/bin/checkov" --version 2>/dev/null | grep -qx "$CHECKOV_VERSION"; then
  started=$(date +%s)
  rm -rf "$CHECKOV_VENV"
  "$PYTHON" -m venv "$CHECKOV_VENV"
  "$CHECKOV_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
  echo "installed checkov $CHECKOV_VERSION into $CHECKOV_VENV in $(( $(date +%s) - started )) s"
fi
# Modules are scanned through the environments that call them and on their own; nothing is
# downloaded (the module is local).
"$CHECKOV_VENV/bin/checkov" --directory "$TF_DIR" --framework terraform --quiet --compact \
  --skip-download --download-external-modules false
