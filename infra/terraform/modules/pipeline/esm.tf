# One mapping per consumer, each with its own settings, queue and checkpoints, so one sink's outage
# or tuning never stalls the other. The local ESM runner reads these same settings from the API.

resource "aws_lambda_event_source_mapping" "consumer" {
  for_each = local.consumers

  function_name    = aws_lambda_alias.live[each.key].arn
  event_source_arn = aws_kinesis_stream.events.arn
  enabled          = var.esm[each.key].enabled

  batch_size                         = var.esm[each.key].batch_size
  maximum_batching_window_in_seconds = var.esm[each.key].maximum_batching_window_in_seconds
  starting_position                  = var.esm[each.key].starting_position
  starting_position_timestamp        = var.esm[each.key].starting_position_timestamp
  parallelization_factor             = var.esm[each.key].parallelization_factor
  maximum_retry_attempts             = var.esm[each.key].maximum_retry_attempts
  maximum_record_age_in_seconds      = var.esm[each.key].maximum_record_age_in_seconds
  bisect_batch_on_function_error     = var.esm[each.key].bisect_batch_on_function_error
  tumbling_window_in_seconds         = var.esm[each.key].tumbling_window_in_seconds > 0 ? var.esm[each.key].tumbling_window_in_seconds : null
  function_response_types            = var.esm[each.key].report_batch_item_failures ? ["ReportBatchItemFailures"] : []

  dynamic "destination_config" {
    for_each = var.esm[each.key].on_failure_destination ? [1] : []
    content {
      on_failure {
        destination_arn = aws_sqs_queue.on_failure[each.key].arn
      }
    }
  }

  # The role must allow reading the stream and sending to the queue before the mapping starts.
  depends_on = [aws_iam_role_policy.function]
}
