# One on-failure queue per consumer: the mapping sends a pointer to each discarded batch (shard,
# sequence range, reason), which `pipeline replay` reads back from the stream.

resource "aws_sqs_queue" "on_failure" {
  for_each = local.consumers

  name                              = local.queue_names[each.key]
  message_retention_seconds         = var.dlq_retention_seconds
  kms_master_key_id                 = local.kms_key_arn
  kms_data_key_reuse_period_seconds = 3600
  # Inline, not an aws_sqs_queue_policy: one propagation wait instead of two on every apply.
  policy = var.tls_only_policy ? data.aws_iam_policy_document.on_failure[each.key].json : null
  tags   = var.tags
}

data "aws_iam_policy_document" "on_failure" {
  for_each = local.consumers

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = ["arn:${local.partition}:sqs:${local.region}:${local.account}:${local.queue_names[each.key]}"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}
