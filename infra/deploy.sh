#!/usr/bin/env bash
# terraform init, plan and apply of one environment, with the artifacts of `make package`.
#
# Usage: infra/deploy.sh ENV [terraform plan options...]
#   ENV=prod   needs envs/prod/backend.hcl and envs/prod/terraform.tfvars (copy the .example files)
#   ENV=local  applies to the embedded stack on 127.0.0.1:$PORT (4566), which must be running
# The plan is saved to build/ENV.tfplan and exactly that plan is applied.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=infra/lib.sh
source infra/lib.sh

env_name=${1:-}
[[ -n $env_name ]] || { echo "usage: infra/deploy.sh ENV [terraform plan options]" >&2; exit 2; }
shift
dir=infra/terraform/envs/$env_name
if [[ ! -d $dir ]]; then
  echo "error: no environment $dir (see infra/terraform/envs/)" >&2
  exit 2
fi
command -v terraform >/dev/null || { echo "error: terraform is not on the PATH" >&2; exit 2; }
for f in build/function.zip build/layer.zip; do
  [[ -f $f ]] || { echo "error: $f is missing: run make package first" >&2; exit 2; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
use_provider_mirror "$work"
export TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1

init_args=(-input=false)
plan_args=(-input=false)
case $env_name in
  local)
    plan_args+=(-var "port=${PORT:-4566}")
    ;;
  *)
    if [[ ! -f $dir/backend.hcl ]]; then
      echo "error: $dir/backend.hcl is missing: copy backend.hcl.example and fill in the state bucket" >&2
      exit 2
    fi
    if [[ ! -f $dir/terraform.tfvars ]]; then
      echo "error: $dir/terraform.tfvars is missing: copy terraform.tfvars.example and edit it" >&2
      exit 2
    fi
    init_args+=(-backend-config=backend.hcl)
    ;;
esac

plan=$PWD/build/$env_name.tfplan
terraform -chdir="$dir" init "${init_args[@]}"
terraform -chdir="$dir" plan "${plan_args[@]}" "$@" -out="$plan"
terraform -chdir="$dir" apply -input=false "$plan"
rm -f "$plan"
