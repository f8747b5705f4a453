output "endpoint" {
  description = "The stack these resources live in (AWS_ENDPOINT_URL for the pipeline CLI)."
  value       = local.endpoint
}

output "stream_name" {
  description = "Kinesis stream."
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

output "functions" {
  description = "Per consumer: function, alias, version, role, mapping, queue."
  value       = module.pipeline.functions
}

output "layer_arn" {
  description = "The dependency layer version."
  value       = module.pipeline.layer_arn
}
