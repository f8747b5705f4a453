# Inputs of the pipeline module. Names default to what the Python side expects
# (pipeline/settings.py); anything renamed here reaches the functions through their environment.

variable "name_prefix" {
  description = "Prefix of every resource name; \"pipeline\" matches the Python defaults."
  type        = string
  default     = "pipeline"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name_prefix))
    error_message = "name_prefix: 2-31 characters, lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes them."
  type        = map(string)
  default     = {}
}

# -- encryption ------------------------------------------------------------------------------

variable "kms_key_arn" {
  description = "An existing customer managed KMS key for every resource; null creates one (with rotation)."
  type        = string
  default     = null
}

variable "kms_deletion_window_days" {
  description = "Waiting period before a created KMS key is deleted."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}

# -- stream ----------------------------------------------------------------------------------

variable "stream_name" {
  description = "Kinesis stream name (PIPELINE_STREAM on the producer side); null: <prefix>-events."
  type        = string
  default     = null
}

variable "stream_mode" {
  description = "ON_DEMAND (Kinesis scales the shards) or PROVISIONED (shard_count shards)."
  type        = string
  default     = "ON_DEMAND"

  validation {
    condition     = contains(["ON_DEMAND", "PROVISIONED"], var.stream_mode)
    error_message = "stream_mode must be ON_DEMAND or PROVISIONED."
  }
}

variable "shard_count" {
  description = "Shards of a PROVISIONED stream (ignored for ON_DEMAND)."
  type        = number
  default     = 4

  validation {
    condition     = var.shard_count >= 1 && var.shard_count <= 500 && floor(var.shard_count) == var.shard_count
    error_message = "shard_count must be a whole number from 1 to 500."
  }
}

variable "stream_retention_hours" {
  description = "How long Kinesis keeps records (24 to 8760 hours); the replay horizon of the stream."
  type        = number
  default     = 168

  validation {
    condition     = var.stream_retention_hours >= 24 && var.stream_retention_hours <= 8760
    error_message = "stream_retention_hours must be between 24 and 8760."
  }
}

variable "stream_encryption" {
  description = "Encrypt the stream with the KMS key (off only where the endpoint lacks it)."
  type        = bool
  default     = true
}

variable "shard_level_metrics" {
  description = "Enhanced shard-level CloudWatch metrics of the stream (cost per shard-metric)."
  type        = list(string)
  default     = ["IncomingBytes", "IncomingRecords", "IteratorAgeMilliseconds", "ReadProvisionedThroughputExceeded", "WriteProvisionedThroughputExceeded"]
}

# -- lake bucket -----------------------------------------------------------------------------

variable "bucket_name" {
  description = "Lake bucket (PIPELINE_BUCKET); null: <prefix>-lake. S3 names are global: prod sets its own."
  type        = string
  default     = null
}

variable "bucket_force_destroy" {
  description = "Let terraform destroy delete a non-empty bucket (local and test stacks only)."
  type        = bool
  default     = false
}

variable "lake_prefix" {
  description = "Key prefix of the Avro lake files (PIPELINE_LAKE_PREFIX)."
  type        = string
  default     = "events/v1"
}

variable "raw_prefix" {
  description = "Key prefix of the raw archive kept for replay (PIPELINE_RAW_PREFIX)."
  type        = string
  default     = "raw/v1"
}

variable "quarantine_prefix" {
  description = "Key prefix of quarantined poison records (PIPELINE_QUARANTINE_PREFIX)."
  type        = string
  default     = "quarantine/v1"
}

variable "raw_transition_days" {
  description = "Days before raw archive objects move to STANDARD_IA (then GLACIER_IR after raw_glacier_days)."
  type        = number
  default     = 30

  validation {
    condition     = var.raw_transition_days >= 30
    error_message = "raw_transition_days must be at least 30 (S3's minimum for STANDARD_IA)."
  }
}

variable "raw_glacier_days" {
  description = "Days before raw archive objects move to GLACIER_IR."
  type        = number
  default     = 90
}

variable "raw_expiration_days" {
  description = "Days before raw archive objects expire; 0 keeps them (the replay horizon)."
  type        = number
  default     = 365

  validation {
    condition     = var.raw_expiration_days >= 0
    error_message = "raw_expiration_days must be 0 (keep) or a positive number of days."
  }
}

variable "quarantine_expiration_days" {
  description = "Days before quarantined records expire (time to inspect and replay them)."
  type        = number
  default     = 90

  validation {
    condition     = var.quarantine_expiration_days >= 1
    error_message = "quarantine_expiration_days must be at least 1."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Days before overwritten or deleted object versions are removed."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1
    error_message = "noncurrent_version_expiration_days must be at least 1."
  }
}

variable "tls_only_policy" {
  description = "Resource policies on the bucket and queues denying requests without TLS (1.2+). Off only for a plain-HTTP local endpoint."
  type        = bool
  default     = true
}

variable "access_log_bucket" {
  description = "Bucket receiving S3 server access logs of the lake; null: no access logging."
  type        = string
  default     = null
}

# -- tables ----------------------------------------------------------------------------------

variable "checkpoint_table" {
  description = "Checkpoint table (PIPELINE_CHECKPOINT_TABLE); null: <prefix>-checkpoints."
  type        = string
  default     = null
}

variable "state_table" {
  description = "Per-customer state table (PIPELINE_STATE_TABLE); null: <prefix>-customer-state."
  type        = string
  default     = null
}

variable "event_id_table" {
  description = "Event-id (producer duplicate) table with a TTL (PIPELINE_EVENT_ID_TABLE); null: <prefix>-event-ids."
  type        = string
  default     = null
}

variable "point_in_time_recovery" {
  description = "Point-in-time recovery on every table."
  type        = bool
  default     = true
}

variable "table_deletion_protection" {
  description = "Deletion protection on every table (off for stacks that are destroyed, like local)."
  type        = bool
  default     = true
}

variable "event_id_dedupe" {
  description = "Producer-duplicate detection: off, batch (free, within a batch) or table (one write per event)."
  type        = string
  default     = "batch"

  validation {
    condition     = contains(["off", "batch", "table"], var.event_id_dedupe)
    error_message = "event_id_dedupe must be off, batch or table."
  }
}

variable "event_id_ttl_seconds" {
  description = "How long an event id is remembered; at least the replay horizon."
  type        = number
  default     = 604800

  validation {
    condition     = var.event_id_ttl_seconds >= 3600
    error_message = "event_id_ttl_seconds must be at least 3600."
  }
}

variable "lake_codec" {
  description = "Avro container codec of lake files: deflate, zstandard or null."
  type        = string
  default     = "deflate"

  validation {
    condition     = contains(["deflate", "zstandard", "null"], var.lake_codec)
    error_message = "lake_codec must be deflate, zstandard or null."
  }
}

# -- on-failure queues -----------------------------------------------------------------------

variable "dlq_prefix" {
  description = "Name prefix of the on-failure queues, <dlq_prefix>-<consumer>; null: <prefix>-on-failure."
  type        = string
  default     = null
}

variable "dlq_retention_seconds" {
  description = "How long on-failure messages (batch pointers, not records) are kept."
  type        = number
  default     = 1209600

  validation {
    condition     = var.dlq_retention_seconds >= 60 && var.dlq_retention_seconds <= 1209600
    error_message = "dlq_retention_seconds must be between 60 and 1209600 (14 days)."
  }
}

# -- functions -------------------------------------------------------------------------------

variable "function_zip" {
  description = "Path of the function package (build/function.zip from `make package`)."
  type        = string
}

variable "layer_zip" {
  description = "Path of the dependency layer (build/layer.zip from `make package`)."
  type        = string
}

variable "runtime" {
  description = "Lambda runtime of the functions and the layer (the layer is built for it)."
  type        = string
  default     = "python3.12"

  validation {
    condition     = contains(["python3.11", "python3.12", "python3.13"], var.runtime)
    error_message = "runtime must be python3.11, python3.12 or python3.13 (and match the layer's build)."
  }
}

variable "architecture" {
  description = "Instruction set of the functions: x86_64 or arm64 (the layer must be built for it)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "tracing_mode" {
  description = "X-Ray tracing of the functions: Active or PassThrough."
  type        = string
  default     = "Active"

  validation {
    condition     = contains(["Active", "PassThrough"], var.tracing_mode)
    error_message = "tracing_mode must be Active or PassThrough."
  }
}

variable "functions" {
  description = <<-EOT
    Per consumer ("lake-writer", "state-writer"): memory_size (MB), timeout (s), reserved_concurrency
    (null: unreserved), provisioned_concurrency (0: none; on the live alias), log_level and extra
    environment variables. Both consumers must be present; {} takes every default.
  EOT
  type = map(object({
    memory_size             = optional(number, 1024)
    timeout                 = optional(number, 60)
    reserved_concurrency    = optional(number)
    provisioned_concurrency = optional(number, 0)
    log_level               = optional(string, "INFO")
    environment             = optional(map(string), {})
  }))
  default = {
    "lake-writer"  = {}
    "state-writer" = {}
  }

  validation {
    condition     = length(var.functions) == 2 && alltrue([for k in keys(var.functions) : contains(["lake-writer", "state-writer"], k)])
    error_message = "functions must have exactly the keys \"lake-writer\" and \"state-writer\" ({} takes the defaults)."
  }
  validation {
    condition     = alltrue([for f in values(var.functions) : f.memory_size >= 128 && f.memory_size <= 10240])
    error_message = "functions[*].memory_size must be between 128 and 10240 MB."
  }
  validation {
    condition     = alltrue([for f in values(var.functions) : f.timeout >= 1 && f.timeout <= 900])
    error_message = "functions[*].timeout must be between 1 and 900 seconds."
  }
  validation {
    condition     = alltrue([for f in values(var.functions) : f.reserved_concurrency == null ? true : f.reserved_concurrency >= 0])
    error_message = "functions[*].reserved_concurrency must be null (unreserved) or >= 0 (0 stops the function)."
  }
  validation {
    condition     = alltrue([for f in values(var.functions) : f.provisioned_concurrency >= 0])
    error_message = "functions[*].provisioned_concurrency must be >= 0."
  }
  validation {
    condition     = alltrue([for f in values(var.functions) : contains(["DEBUG", "INFO", "WARNING", "ERROR"], f.log_level)])
    error_message = "functions[*].log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "log_retention_days" {
  description = "Retention of the functions' log groups."
  type        = number
  default     = 90

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of CloudWatch Logs' values (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ...)."
  }
}

variable "log_encryption" {
  description = "Encrypt the log groups with the KMS key (off only where the endpoint lacks it)."
  type        = bool
  default     = true
}

variable "code_signing_config_arn" {
  description = "Code signing configuration the functions must satisfy; null: unsigned packages accepted."
  type        = string
  default     = null
}

variable "invoke_principals" {
  description = <<-EOT
    Who may invoke each consumer's live alias directly (operators replaying a batch by hand, say):
    consumer => list of { principal (account id, role ARN or service), source_arn (optional) }.
    The event source mapping needs no entry: it invokes with the function's own role.
  EOT
  type = map(list(object({
    principal  = string
    source_arn = optional(string)
  })))
  default = {}

  validation {
    condition     = alltrue([for k in keys(var.invoke_principals) : contains(["lake-writer", "state-writer"], k)])
    error_message = "invoke_principals keys must be \"lake-writer\" or \"state-writer\"."
  }
}

# -- event source mappings -------------------------------------------------------------------

variable "esm" {
  description = <<-EOT
    One Kinesis event source mapping per consumer ("lake-writer", "state-writer"), every setting of
    the Lambda API. Both consumers must be present; {} takes every default.
  EOT
  type = map(object({
    enabled                            = optional(bool, true)
    batch_size                         = optional(number, 1000)
    maximum_batching_window_in_seconds = optional(number, 1)
    starting_position                  = optional(string, "TRIM_HORIZON")
    starting_position_timestamp        = optional(string)
    parallelization_factor             = optional(number, 1)
    maximum_retry_attempts             = optional(number, 10)
    maximum_record_age_in_seconds      = optional(number, 86400)
    bisect_batch_on_function_error     = optional(bool, true)
    report_batch_item_failures         = optional(bool, true)
    tumbling_window_in_seconds         = optional(number, 0)
    on_failure_destination             = optional(bool, true)
  }))
  default = {
    "lake-writer"  = {}
    "state-writer" = {}
  }

  validation {
    condition     = length(var.esm) == 2 && alltrue([for k in keys(var.esm) : contains(["lake-writer", "state-writer"], k)])
    error_message = "esm must have exactly the keys \"lake-writer\" and \"state-writer\" ({} takes the defaults)."
  }
  validation {
    condition     = alltrue([for m in values(var.esm) : m.batch_size >= 1 && m.batch_size <= 10000])
    error_message = "esm[*].batch_size must be between 1 and 10000 (Kinesis)."
  }
  validation {
    condition     = alltrue([for m in values(var.esm) : m.maximum_batching_window_in_seconds >= 0 && m.maximum_batching_window_in_seconds <= 300])
    error_message = "esm[*].maximum_batching_window_in_seconds must be between 0 and 300."
  }
  validation {
    condition     = alltrue([for m in values(var.esm) : contains(["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"], m.starting_position)])
    error_message = "esm[*].starting_position must be TRIM_HORIZON, LATEST or AT_TIMESTAMP."
  }
  validation {
    condition     = alltrue([for m in values(var.esm) : (m.starting_position == "AT_TIMESTAMP") == (m.starting_position_timestamp != null) && (m.starting_position_timestamp == null ? true : can(formatdate("YYYY", m.starting_position_timestamp)))])
    error_message = "esm[*].starting_position_timestamp (RFC 3339) is required with AT_TIMESTAMP and only then."
  }
  validation {
    condition     = alltrue([for m in values(var.esm) : m.parallelization_factor >= 1 && m.parallelization_factor <= 10])
    error_message = "esm[*].parallelization_factor must be between 1 and 10."
  }
  validation {
    condition     = alltrue([for m in values(var.esm) : m.maximum_retry_attempts >= -1 && m.maximum_retry_attempts <= 10000])
    error_message = "esm[*].maximum_retry_attempts must be -1 (until the record expires) or 0 to 10000."
  }
  validation {
    condition     = alltrue([for m in values(var.esm) : m.maximum_record_age_in_seconds == -1 || (m.maximum_record_age_in_seconds >= 60 && m.maximum_record_age_in_seconds <= 604800)])
    error_message = "esm[*].maximum_record_age_in_seconds must be -1 (no limit) or 60 to 604800."
  }
  validation {
    condition     = alltrue([for m in values(var.esm) : m.tumbling_window_in_seconds >= 0 && m.tumbling_window_in_seconds <= 900])
    error_message = "esm[*].tumbling_window_in_seconds must be between 0 and 900."
  }
}

# -- alarms ----------------------------------------------------------------------------------

variable "alarms" {
  description = "Create CloudWatch alarms (iterator age, function errors, on-failure queue depth)."
  type        = bool
  default     = true
}

variable "iterator_age_threshold_ms" {
  description = "Alarm when a consumer's maximum iterator age stays above this many milliseconds."
  type        = number
  default     = 300000

  validation {
    condition     = var.iterator_age_threshold_ms > 0
    error_message = "iterator_age_threshold_ms must be positive."
  }
}

variable "alarm_evaluation_periods" {
  description = "Consecutive one-minute periods over the threshold before an alarm fires."
  type        = number
  default     = 5

  validation {
    condition     = var.alarm_evaluation_periods >= 1
    error_message = "alarm_evaluation_periods must be at least 1."
  }
}

variable "errors_threshold" {
  description = "Alarm when a consumer's function errors in one period exceed this count."
  type        = number
  default     = 0
}

variable "alarm_sns_topic" {
  description = "Create an SNS topic (encrypted with the KMS key) for the alarms' notifications."
  type        = bool
  default     = false
}

variable "alarm_topic_arn" {
  description = "An existing SNS topic for the alarms' notifications (instead of, or with, the created one)."
  type        = string
  default     = null
}

variable "alarm_emails" {
  description = "Email addresses subscribed to the created topic (each must confirm)."
  type        = list(string)
  default     = []
}

# -- network ---------------------------------------------------------------------------------

variable "vpc" {
  description = <<-EOT
    Place the functions in a VPC: vpc_id, subnet_ids, security_group_ids, route_table_ids (for the
    S3 and DynamoDB gateway endpoints) and create_endpoints (S3 and DynamoDB gateway endpoints, and
    an X-Ray interface endpoint when tracing is Active). null: no VPC.
  EOT
  type = object({
    vpc_id             = string
    subnet_ids         = list(string)
    security_group_ids = list(string)
    route_table_ids    = optional(list(string), [])
    create_endpoints   = optional(bool, true)
  })
  default = null

  validation {
    condition     = var.vpc == null ? true : length(var.vpc.subnet_ids) > 0 && length(var.vpc.security_group_ids) > 0
    error_message = "vpc needs at least one subnet and one security group."
  }
}
