# The pipeline: one stream, two consumers (each with its function, alias, mapping, queue, role,
# log group and alarms), the lake bucket and three tables, all encrypted with one KMS key.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  consumers = toset(["lake-writer", "state-writer"])
  handlers = {
    "lake-writer"  = "consumers.lake_writer.handler.lambda_handler"
    "state-writer" = "consumers.state_writer.handler.lambda_handler"
  }

  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition
  region    = data.aws_region.current.name

  stream_name      = coalesce(var.stream_name, "${var.name_prefix}-events")
  bucket_name      = coalesce(var.bucket_name, "${var.name_prefix}-lake")
  checkpoint_table = coalesce(var.checkpoint_table, "${var.name_prefix}-checkpoints")
  state_table      = coalesce(var.state_table, "${var.name_prefix}-customer-state")
  event_id_table   = coalesce(var.event_id_table, "${var.name_prefix}-event-ids")
  dlq_prefix       = coalesce(var.dlq_prefix, "${var.name_prefix}-on-failure")

  function_names = { for c in local.consumers : c => "${var.name_prefix}-${c}" }
  queue_names    = { for c in local.consumers : c => "${local.dlq_prefix}-${c}" }

  kms_key_arn = var.kms_key_arn != null ? var.kms_key_arn : aws_kms_key.pipeline[0].arn

  # What pipeline/settings.py reads (Settings.from_env); the function's own names win.
  function_env = {
    for c in local.consumers : c => merge(
      {
        PIPELINE_CONSUMER          = c
        PIPELINE_STREAM            = local.stream_name
        PIPELINE_BUCKET            = local.bucket_name
        PIPELINE_CHECKPOINT_TABLE  = local.checkpoint_table
        PIPELINE_STATE_TABLE       = local.state_table
        PIPELINE_EVENT_ID_TABLE    = local.event_id_table
        PIPELINE_EVENT_ID_DEDUPE   = var.event_id_dedupe
        PIPELINE_EVENT_ID_TTL      = tostring(var.event_id_ttl_seconds)
        PIPELINE_LAKE_CODEC        = var.lake_codec
        PIPELINE_LAKE_PREFIX       = var.lake_prefix
        PIPELINE_RAW_PREFIX        = var.raw_prefix
        PIPELINE_QUARANTINE_PREFIX = var.quarantine_prefix
        PIPELINE_DLQ_PREFIX        = local.dlq_prefix
        LOG_LEVEL                  = var.functions[c].log_level
      },
      var.functions[c].environment,
    )
  }
}

# -- KMS: one customer managed key for the stream, bucket, tables, queues, logs and topic --------

data "aws_iam_policy_document" "kms" {
  count = var.kms_key_arn == null ? 1 : 0

  # Key administration and use stay with the account's IAM policies (the roles below grant use).
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account}:root"]
    }
  }

  # CloudWatch Logs encrypts the functions' log groups, and only those.
  statement {
    sid       = "LogsEncryptFunctionLogs"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account}:log-group:/aws/lambda/${var.name_prefix}-*"]
    }
  }

  # CloudWatch alarms publish to the encrypted topic.
  statement {
    sid       = "CloudWatchPublishesAlarms"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_kms_key" "pipeline" {
  count = var.kms_key_arn == null ? 1 : 0

  description             = "${var.name_prefix}: stream, lake, tables, queues, logs"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.kms[0].json
  tags                    = var.tags
}

resource "aws_kms_alias" "pipeline" {
  count = var.kms_key_arn == null ? 1 : 0

  name          = "alias/${var.name_prefix}"
  target_key_id = aws_kms_key.pipeline[0].key_id
}
