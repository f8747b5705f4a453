output "stream_name" {
  description = "Producers' PIPELINE_STREAM."
  value       = module.pipeline.stream_name
}

output "bucket" {
  description = "Lake bucket."
  value       = module.pipeline.bucket
}

output "tables" {
  description = "DynamoDB tables."
  value       = module.pipeline.tables
}

output "kms_key_arn" {
  description = "Producers need kms:GenerateDataKey on this key to put to the stream."
  value       = module.pipeline.kms_key_arn
}

output "functions" {
  description = "Per consumer: function, alias, version, role, mapping, queue, log group."
  value       = module.pipeline.functions
}

output "alarm_topic_arn" {
  description = "SNS topic of the alarms."
  value       = module.pipeline.alarm_topic_arn
}
