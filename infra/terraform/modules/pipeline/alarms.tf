# Per consumer: the mapping falling behind (iterator age), function errors, and batches given up
# on (messages in the on-failure queue). Notifications go to the optional SNS topic(s).

resource "aws_sns_topic" "alarms" {
  count = var.alarm_sns_topic ? 1 : 0

  name              = "${var.name_prefix}-alarms"
  kms_master_key_id = local.kms_key_arn
  tags              = var.tags
}

resource "aws_sns_topic_subscription" "email" {
  for_each = var.alarm_sns_topic ? toset(var.alarm_emails) : toset([])

  topic_arn = aws_sns_topic.alarms[0].arn
  protocol  = "email"
  endpoint  = each.value
}

locals {
  alarm_actions = compact([
    var.alarm_sns_topic ? aws_sns_topic.alarms[0].arn : "",
    var.alarm_topic_arn == null ? "" : var.alarm_topic_arn,
  ])
  alarmed = var.alarms ? local.consumers : toset([])
}

resource "aws_cloudwatch_metric_alarm" "iterator_age" {
  for_each = local.alarmed

  alarm_name          = "${local.function_names[each.key]}-iterator-age"
  alarm_description   = "${each.key} is falling behind ${local.stream_name}: records wait longer than ${var.iterator_age_threshold_ms} ms."
  namespace           = "AWS/Lambda"
  metric_name         = "IteratorAge"
  dimensions          = { FunctionName = local.function_names[each.key], Resource = "${local.function_names[each.key]}:live" }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = var.alarm_evaluation_periods
  threshold           = var.iterator_age_threshold_ms
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "errors" {
  for_each = local.alarmed

  alarm_name          = "${local.function_names[each.key]}-errors"
  alarm_description   = "${each.key} failed whole batches (function errors); the mapping retries or bisects them."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = local.function_names[each.key], Resource = "${local.function_names[each.key]}:live" }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 1
  threshold           = var.errors_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "on_failure_depth" {
  for_each = local.alarmed

  alarm_name          = "${local.queue_names[each.key]}-depth"
  alarm_description   = "${each.key} gave up on at least one batch: see ${local.queue_names[each.key]} and replay it."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = local.queue_names[each.key] }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  tags                = var.tags
}
