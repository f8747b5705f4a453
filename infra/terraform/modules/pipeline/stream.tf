resource "aws_kinesis_stream" "events" {
  name             = local.stream_name
  shard_count      = var.stream_mode == "PROVISIONED" ? var.shard_count : null
  retention_period = var.stream_retention_hours
  encryption_type  = var.stream_encryption ? "KMS" : "NONE"
  kms_key_id       = var.stream_encryption ? local.kms_key_arn : null

  shard_level_metrics = var.shard_level_metrics

  stream_mode_details {
    stream_mode = var.stream_mode
  }

  tags = var.tags
}
