# One execution role per function, trusted by Lambda only, allowed exactly what that consumer does:
# the mapping's reads of the stream and send to its own on-failure queue, its own log group, and
# its own sink (objects under the lake prefixes, or items of the state table).

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_iam_role" "function" {
  for_each = local.consumers

  name               = "${local.function_names[each.key]}-role"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

locals {
  bucket_arn = "arn:${local.partition}:s3:::${local.bucket_name}"
  lake_keys  = "${local.bucket_arn}/${trimsuffix(var.lake_prefix, "/")}/*"
  raw_keys   = "${local.bucket_arn}/${trimsuffix(var.raw_prefix, "/")}/*"
  quarantine_keys = {
    for c in local.consumers : c => "${local.bucket_arn}/${trimsuffix(var.quarantine_prefix, "/")}/${c}/*"
  }
  table_arn = { for k, t in aws_dynamodb_table.this : k => t.arn }
}

data "aws_iam_policy_document" "function" {
  for_each = local.consumers

  # The event source mapping reads the stream with the function's role.
  statement {
    sid = "ReadStream"
    actions = [
      "kinesis:DescribeStream",
      "kinesis:DescribeStreamSummary",
      "kinesis:GetRecords",
      "kinesis:GetShardIterator",
      "kinesis:ListShards",
    ]
    resources = [aws_kinesis_stream.events.arn]
  }

  # ... and sends a pointer to each discarded batch to this consumer's queue.
  statement {
    sid       = "SendOnFailure"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.on_failure[each.key].arn]
  }

  # Every store is encrypted with the pipeline key: decrypt stream records and table items,
  # encrypt objects, items and queue messages.
  statement {
    sid       = "UsePipelineKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [local.kms_key_arn]
  }

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function[each.key].arn}:*"]
  }

  # Per-shard checkpoints: one consistent read and conditional updates per batch.
  statement {
    sid       = "Checkpoints"
    actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    resources = [local.table_arn["checkpoints"]]
  }

  dynamic "statement" {
    for_each = var.event_id_dedupe == "table" ? [1] : []
    content {
      sid       = "EventIds"
      actions   = ["dynamodb:PutItem"]
      resources = [local.table_arn["event_ids"]]
    }
  }

  # Poison records, under this consumer's own quarantine folder.
  statement {
    sid       = "Quarantine"
    actions   = ["s3:PutObject"]
    resources = [local.quarantine_keys[each.key]]
  }

  # Lake writer: write-once Avro objects (HeadObject to resolve an intent, DeleteObject to discard
  # a half-written one), the raw archive, and ListBucket so a missing key answers 404, not 403.
  dynamic "statement" {
    for_each = each.key == "lake-writer" ? [1] : []
    content {
      sid       = "LakeObjects"
      actions   = ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"]
      resources = [local.lake_keys, local.raw_keys]
    }
  }
  dynamic "statement" {
    for_each = each.key == "lake-writer" ? [1] : []
    content {
      sid       = "LakeList"
      actions   = ["s3:ListBucket"]
      resources = [local.bucket_arn]
    }
  }

  # State writer: conditional per-customer updates, and a read when a condition fails.
  dynamic "statement" {
    for_each = each.key == "state-writer" ? [1] : []
    content {
      sid       = "CustomerState"
      actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
      resources = [local.table_arn["state"]]
    }
  }
}

resource "aws_iam_role_policy" "function" {
  for_each = local.consumers

  name   = "${local.function_names[each.key]}-access"
  role   = aws_iam_role.function[each.key].id
  policy = data.aws_iam_policy_document.function[each.key].json
}

# X-Ray and VPC networking take no resource-level permissions: AWS documents "*" for them.
data "aws_iam_policy_document" "unscoped" {
  #checkov:skip=CKV_AWS_356:xray:PutTraceSegments/PutTelemetryRecords and the ec2 network-interface actions Lambda needs in a VPC support no resource-level permissions; AWS documents Resource "*".
  #checkov:skip=CKV_AWS_111:Same: these write actions cannot be constrained by resource.
  count = var.tracing_mode == "Active" || var.vpc != null ? 1 : 0

  dynamic "statement" {
    for_each = var.tracing_mode == "Active" ? [1] : []
    content {
      sid       = "XRay"
      actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    for_each = var.vpc != null ? [1] : []
    content {
      sid = "VpcNetworkInterfaces"
      actions = [
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
      ]
      resources = ["*"]
    }
  }
}

resource "aws_iam_role_policy" "unscoped" {
  for_each = var.tracing_mode == "Active" || var.vpc != null ? local.consumers : toset([])

  name   = "${local.function_names[each.key]}-tracing-network"
  role   = aws_iam_role.function[each.key].id
  policy = data.aws_iam_policy_document.unscoped[0].json
}
