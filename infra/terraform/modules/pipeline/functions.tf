# The consumer functions: one shared dependency layer, a function per consumer published as a new
# version on every code or configuration change, and the `live` alias the mapping invokes. Rolling
# back is pointing the alias at an older version.

resource "aws_lambda_layer_version" "deps" {
  layer_name               = "${var.name_prefix}-deps"
  description              = "fastavro and zstandard for ${var.runtime} ${var.architecture} (boto3 is in the runtime)"
  filename                 = var.layer_zip
  source_code_hash         = filebase64sha256(var.layer_zip)
  compatible_runtimes      = [var.runtime]
  compatible_architectures = [var.architecture]
}

resource "aws_cloudwatch_log_group" "function" {
  #checkov:skip=CKV_AWS_338:Function logs are operational (errors, batch summaries); the data itself lives in the lake. Retention is var.log_retention_days, 90 by default.
  for_each = local.consumers

  name              = "/aws/lambda/${local.function_names[each.key]}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_encryption ? local.kms_key_arn : null
  tags              = var.tags
}

resource "aws_lambda_function" "consumer" {
  #checkov:skip=CKV_AWS_116:A dead-letter queue only applies to asynchronous invocations; these functions are invoked synchronously by their Kinesis mapping, whose on-failure destination is the SQS queue below.
  #checkov:skip=CKV_AWS_117:VPC placement is optional (var.vpc): the functions only reach S3, DynamoDB and X-Ray, all public AWS endpoints, and need no private resource.
  #checkov:skip=CKV_AWS_115:Reserved concurrency is optional (functions[*].reserved_concurrency): a Kinesis mapping already bounds concurrency to shards x parallelization factor.
  #checkov:skip=CKV_AWS_272:Code signing is optional (var.code_signing_config_arn); packages are built reproducibly by infra/package.py and their SHA-256 is pinned in state.
  for_each = local.consumers

  function_name = local.function_names[each.key]
  description   = "${each.key}: Kinesis batches of ${local.stream_name}"
  role          = aws_iam_role.function[each.key].arn
  runtime       = var.runtime
  architectures = [var.architecture]
  handler       = local.handlers[each.key]

  filename         = var.function_zip
  source_code_hash = filebase64sha256(var.function_zip)
  layers           = [aws_lambda_layer_version.deps.arn]
  publish          = true

  memory_size                    = var.functions[each.key].memory_size
  timeout                        = var.functions[each.key].timeout
  reserved_concurrent_executions = coalesce(var.functions[each.key].reserved_concurrency, -1)
  kms_key_arn                    = local.kms_key_arn
  code_signing_config_arn        = var.code_signing_config_arn

  environment {
    variables = local.function_env[each.key]
  }

  tracing_config {
    mode = var.tracing_mode
  }

  dynamic "vpc_config" {
    for_each = var.vpc == null ? [] : [var.vpc]
    content {
      subnet_ids         = vpc_config.value.subnet_ids
      security_group_ids = vpc_config.value.security_group_ids
    }
  }

  tags = var.tags

  # The log group (retention, encryption) must exist before Lambda would create a bare one.
  depends_on = [aws_iam_role_policy.function, aws_iam_role_policy.unscoped, aws_cloudwatch_log_group.function]
}

resource "aws_lambda_alias" "live" {
  for_each = local.consumers

  name             = "live"
  description      = "What the event source mapping invokes; move it to roll back."
  function_name    = aws_lambda_function.consumer[each.key].function_name
  function_version = aws_lambda_function.consumer[each.key].version
}

resource "aws_lambda_provisioned_concurrency_config" "live" {
  for_each = { for c in local.consumers : c => var.functions[c].provisioned_concurrency if var.functions[c].provisioned_concurrency > 0 }

  function_name                     = aws_lambda_alias.live[each.key].function_name
  qualifier                         = aws_lambda_alias.live[each.key].name
  provisioned_concurrent_executions = each.value
}

# Who else may invoke the live alias (the mapping needs no permission: it uses the role).
resource "aws_lambda_permission" "invoke" {
  for_each = merge([
    for c, principals in var.invoke_principals : {
      for i, p in principals : "${c}-${i}" => merge(p, { consumer = c })
    }
  ]...)

  statement_id  = "invoke-${each.key}"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.consumer[each.value.consumer].function_name
  qualifier     = aws_lambda_alias.live[each.value.consumer].name
  principal     = each.value.principal
  source_arn    = each.value.source_arn
}
