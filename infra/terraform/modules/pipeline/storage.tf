# The lake: Avro files under lake_prefix, the raw archive under raw_prefix, poison records under
# quarantine_prefix. Private, KMS-encrypted, TLS only, versioned, with lifecycle rules.

resource "aws_s3_bucket" "lake" {
  #checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery choice per deployment; the stream retention and raw archive already allow a rebuild.
  #checkov:skip=CKV2_AWS_62:Nothing consumes S3 event notifications; the lake is read by query engines on their own schedule.
  #checkov:skip=CKV_AWS_18:Server access logging is optional (var.access_log_bucket) because it needs a separate log bucket that the deployment owns.
  bucket        = local.bucket_name
  force_destroy = var.bucket_force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_ownership_controls" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "lake" {
  bucket                  = aws_s3_bucket.lake.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "lake" {
  bucket = aws_s3_bucket.lake.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = local.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_logging" "lake" {
  count = var.access_log_bucket == null ? 0 : 1

  bucket        = aws_s3_bucket.lake.id
  target_bucket = var.access_log_bucket
  target_prefix = "s3/${local.bucket_name}/"
}

resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id

  # The raw archive is read only to replay: cheaper tiers as it ages, then gone after the horizon.
  rule {
    id     = "raw-archive"
    status = "Enabled"
    filter {
      prefix = "${trimsuffix(var.raw_prefix, "/")}/"
    }
    transition {
      days          = var.raw_transition_days
      storage_class = "STANDARD_IA"
    }
    transition {
      days          = max(var.raw_glacier_days, var.raw_transition_days + 30)
      storage_class = "GLACIER_IR"
    }
    dynamic "expiration" {
      for_each = var.raw_expiration_days > 0 ? [var.raw_expiration_days] : []
      content {
        days = max(expiration.value, var.raw_glacier_days + 90, var.raw_transition_days + 120)
      }
    }
  }

  # Poison records are kept long enough to inspect and replay them.
  rule {
    id     = "quarantine"
    status = "Enabled"
    filter {
      prefix = "${trimsuffix(var.quarantine_prefix, "/")}/"
    }
    expiration {
      days = var.quarantine_expiration_days
    }
  }

  rule {
    id     = "housekeeping"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.lake]
}

data "aws_iam_policy_document" "lake" {
  count = var.tls_only_policy ? 1 : 0

  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.lake.arn,
      "${aws_s3_bucket.lake.arn}/*",
    ]
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

  statement {
    sid     = "DenyOutdatedTLS"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.lake.arn,
      "${aws_s3_bucket.lake.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "NumericLessThan"
      variable = "s3:TlsVersion"
      values   = ["1.2"]
    }
  }
}

resource "aws_s3_bucket_policy" "lake" {
  count = var.tls_only_policy ? 1 : 0

  bucket = aws_s3_bucket.lake.id
  policy = data.aws_iam_policy_document.lake[0].json

  # The public access block must exist first, or S3 may judge the policy against the old state.
  depends_on = [aws_s3_bucket_public_access_block.lake]
}
