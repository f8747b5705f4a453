output "stream_name" {
  description = "Kinesis stream (PIPELINE_STREAM for producers)."
  value       = aws_kinesis_stream.events.name
}

output "stream_arn" {
  description = "Kinesis stream ARN."
  value       = aws_kinesis_stream.events.arn
}

output "bucket" {
  description = "Lake bucket (PIPELINE_BUCKET)."
  value       = aws_s3_bucket.lake.bucket
}

output "tables" {
  description = "DynamoDB tables by role: checkpoints, state, event_ids."
  value       = { for k, t in aws_dynamodb_table.this : k => t.name }
}

output "kms_key_arn" {
  description = "The KMS key encrypting the pipeline's data (grant producers kms:GenerateDataKey on it)."
  value       = local.kms_key_arn
}

output "functions" {
  description = "Per consumer: function name, live alias ARN and published version, role, mapping UUID, queue URL."
  value = {
    for c in local.consumers : c => {
      function_name    = aws_lambda_function.consumer[c].function_name
      alias_arn        = aws_lambda_alias.live[c].arn
      version          = aws_lambda_function.consumer[c].version
      role_arn         = aws_iam_role.function[c].arn
      mapping_uuid     = aws_lambda_event_source_mapping.consumer[c].uuid
      on_failure_queue = aws_sqs_queue.on_failure[c].url
      log_group        = aws_cloudwatch_log_group.function[c].name
    }
  }
}

output "layer_arn" {
  description = "The dependency layer version."
  value       = aws_lambda_layer_version.deps.arn
}

output "alarm_topic_arn" {
  description = "The created alarm topic, if any."
  value       = var.alarm_sns_topic ? aws_sns_topic.alarms[0].arn : null
}
