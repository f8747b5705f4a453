# The pipeline applied to the embedded stack (`python -m pipeline.stack.server --port N`, moto over
# HTTP on loopback), the same module as prod with the features moto lacks turned off by variables.
#
#   terraform init && terraform apply -var port=4566
#
# State stays local (this folder); the stack forgets everything when it stops.

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.60.0, < 6.0.0"
    }
  }
}

locals {
  endpoint = "http://${var.host}:${var.port}"
}

provider "aws" {
  region                      = var.region
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  skip_requesting_account_id  = false
  s3_use_path_style           = true

  endpoints {
    cloudwatch = local.endpoint
    dynamodb   = local.endpoint
    ec2        = local.endpoint
    iam        = local.endpoint
    kinesis    = local.endpoint
    kms        = local.endpoint
    lambda     = local.endpoint
    logs       = local.endpoint
    s3         = local.endpoint
    sns        = local.endpoint
    sqs        = local.endpoint
    sts        = local.endpoint
  }
}

module "pipeline" {
  source = "../../modules/pipeline"

  name_prefix  = var.name_prefix
  function_zip = var.function_zip
  layer_zip    = var.layer_zip

  stream_mode            = "PROVISIONED"
  shard_count            = var.shard_count
  stream_retention_hours = 24
  stream_encryption      = var.stream_encryption
  shard_level_metrics    = []

  # moto applies a Deny statement without evaluating its condition, so a TLS-only policy would
  # refuse every request to the plain-HTTP stack.
  tls_only_policy = false

  bucket_force_destroy      = true
  table_deletion_protection = false
  point_in_time_recovery    = true
  event_id_dedupe           = var.event_id_dedupe
  kms_deletion_window_days  = 7

  tracing_mode   = var.tracing_mode
  log_encryption = var.log_encryption
  functions      = var.functions
  esm            = var.esm

  alarms          = var.alarms
  alarm_sns_topic = var.alarm_sns_topic
}
