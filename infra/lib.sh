# shellcheck shell=bash
# Shell helpers of infra/*.sh (sourced, not run).

# find_provider_mirror: print the folder holding registry.terraform.io/hashicorp/aws, or nothing.
# $TF_PROVIDER_MIRROR wins; then /opt/tf-plugins; then a bounded search of the file system.
find_provider_mirror() {
  local found
  if [[ -n ${TF_PROVIDER_MIRROR:-} ]]; then
    [[ -d $TF_PROVIDER_MIRROR/registry.terraform.io/hashicorp/aws ]] && echo "$TF_PROVIDER_MIRROR"
    return 0
  fi
  if [[ -d /opt/tf-plugins/registry.terraform.io/hashicorp/aws ]]; then
    echo /opt/tf-plugins
    return 0
  fi
  found=$(find / -maxdepth 5 -path '*registry.terraform.io/hashicorp' -prune 2>/dev/null | head -n1 || true)
  [[ -n $found && -d $found/aws ]] && echo "${found%/registry.terraform.io/hashicorp}"
  return 0
}

# write_cli_config FILE MIRROR: a Terraform CLI config installing providers from MIRROR only.
write_cli_config() {
  cat >"$1" <<HCL
provider_installation {
  filesystem_mirror {
    path = "$2"
  }
}
HCL
}

# use_provider_mirror TMPDIR: keep an existing TF_CLI_CONFIG_FILE; else, where a mirror exists,
# write a CLI config for it into TMPDIR and export TF_CLI_CONFIG_FILE (else: the public registry).
use_provider_mirror() {
  local mirror
  if [[ -n ${TF_CLI_CONFIG_FILE:-} && -f $TF_CLI_CONFIG_FILE ]]; then
    return 0
  fi
  mirror=$(find_provider_mirror)
  if [[ -n $mirror ]]; then
    write_cli_config "$1/terraformrc" "$mirror"
    export TF_CLI_CONFIG_FILE=$1/terraformrc
    echo "providers from the mirror $mirror"
  else
    unset TF_CLI_CONFIG_FILE
  fi
}
