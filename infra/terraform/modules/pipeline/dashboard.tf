# The CloudWatch dashboard of the pipeline's EMF metrics (pipeline/observability/dashboard.json,
# the same body `pipeline.observability.dashboard.body` fills in from Python).
variable "dashboard" {
  description = "Create the CloudWatch dashboard of the pipeline's metrics."
  type        = bool
  default     = true
}

resource "aws_cloudwatch_dashboard" "pipeline" {
  count          = var.dashboard ? 1 : 0
  dashboard_name = "${var.name_prefix}-pipeline"
  dashboard_body = templatefile("${path.module}/../../../../pipeline/observability/dashboard.json", {
    region         = data.aws_region.current.name
    namespace      = "KinesisPipeline"
    stream_name    = local.stream_name
    lake_function  = local.function_names["lake-writer"]
    state_function = local.function_names["state-writer"]
    lake_dlq       = aws_sqs_queue.on_failure["lake-writer"].name
    state_dlq      = aws_sqs_queue.on_failure["state-writer"].name
  })
}

output "dashboard_url" {
  description = "The CloudWatch console page of the dashboard (null when dashboard = false)."
  value       = var.dashboard ? "https://console.aws.amazon.com/cloudwatch/home?region=${data.aws_region.current.name}#dashboards:name=${aws_cloudwatch_dashboard.pipeline[0].dashboard_name}" : null
}
