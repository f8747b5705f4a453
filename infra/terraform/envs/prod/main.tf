# The production pipeline in one AWS account and region.
#
#   make package                      # build/function.zip and build/layer.zip
#   terraform init -backend-config=backend.hcl
#   terraform plan -out=tfplan && terraform apply tfplan
#
# State is remote (S3 with DynamoDB locking, see backend.tf and backend.hcl.example).

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.60.0, < 6.0.0"
    }
  }
}

provider "aws" {
  region = var.region

  # Refuse to run against an account other than the one this state belongs to.
  allowed_account_ids = var.allowed_account_ids

  default_tags {
    tags = merge({ project = "kinesis-pipeline", environment = "prod", managed-by = "terraform" }, var.tags)
  }
}

module "pipeline" {
  source = "../../modules/pipeline"

  name_prefix  = var.name_prefix
  function_zip = var.function_zip
  layer_zip    = var.layer_zip

  stream_mode            = var.stream_mode
  shard_count            = var.shard_count
  stream_retention_hours = var.stream_retention_hours

  bucket_name                = var.bucket_name
  access_log_bucket          = var.access_log_bucket
  raw_expiration_days        = var.raw_expiration_days
  quarantine_expiration_days = var.quarantine_expiration_days

  event_id_dedupe      = var.event_id_dedupe
  event_id_ttl_seconds = var.event_id_ttl_seconds
  lake_codec           = var.lake_codec

  functions          = var.functions
  esm                = var.esm
  log_retention_days = var.log_retention_days
  invoke_principals  = var.invoke_principals
  vpc                = var.vpc

  alarms                    = true
  alarm_sns_topic           = true
  alarm_emails              = var.alarm_emails
  iterator_age_threshold_ms = var.iterator_age_threshold_ms
}
