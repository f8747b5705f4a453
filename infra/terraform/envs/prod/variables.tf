variable "region" {
  description = "AWS region of the pipeline."
  type        = string
}

variable "allowed_account_ids" {
  description = "The AWS account(s) this state may be applied to."
  type        = list(string)
}

variable "name_prefix" {
  description = "Prefix of every resource name; keep \"pipeline\" to match the Python defaults."
  type        = string
  default     = "pipeline"
}

variable "tags" {
  description = "Extra tags on every resource."
  type        = map(string)
  default     = {}
}

variable "function_zip" {
  description = "Function package from `make package`."
  type        = string
  default     = "../../../../build/function.zip"
}

variable "layer_zip" {
  description = "Dependency layer from `make package`."
  type        = string
  default     = "../../../../build/layer.zip"
}

variable "stream_mode" {
  description = "ON_DEMAND or PROVISIONED."
  type        = string
  default     = "ON_DEMAND"
}

variable "shard_count" {
  description = "Shards when PROVISIONED."
  type        = number
  default     = 4
}

variable "stream_retention_hours" {
  description = "Kinesis retention (replay horizon of the stream)."
  type        = number
  default     = 168
}

variable "bucket_name" {
  description = "Lake bucket; S3 names are global, so choose one (it reaches the functions as PIPELINE_BUCKET)."
  type        = string
}

variable "access_log_bucket" {
  description = "Bucket for S3 server access logs of the lake (null: none)."
  type        = string
  default     = null
}

variable "raw_expiration_days" {
  description = "Days the raw archive is kept (0: forever)."
  type        = number
  default     = 365
}

variable "quarantine_expiration_days" {
  description = "Days quarantined records are kept."
  type        = number
  default     = 90
}

variable "event_id_dedupe" {
  description = "off, batch or table."
  type        = string
  default     = "batch"
}

variable "event_id_ttl_seconds" {
  description = "How long event ids are remembered (table mode)."
  type        = number
  default     = 604800
}

variable "lake_codec" {
  description = "deflate, zstandard or null."
  type        = string
  default     = "deflate"
}

variable "functions" {
  description = "Per-consumer function settings (see the module's variable)."
  type        = any
  default = {
    "lake-writer"  = {}
    "state-writer" = {}
  }
}

variable "esm" {
  description = "Per-consumer event source mapping settings (see the module's variable)."
  type        = any
  default = {
    "lake-writer"  = {}
    "state-writer" = {}
  }
}

variable "log_retention_days" {
  description = "Retention of the functions' logs."
  type        = number
  default     = 90
}

variable "invoke_principals" {
  description = "Who may invoke each live alias directly (see the module's variable)."
  type        = any
  default     = {}
}

variable "vpc" {
  description = "VPC placement (see the module's variable); null: none."
  type        = any
  default     = null
}

variable "alarm_emails" {
  description = "Addresses notified by the alarms (each confirms its subscription)."
  type        = list(string)
  default     = []
}

variable "iterator_age_threshold_ms" {
  description = "Iterator age that raises the alarm."
  type        = number
  default     = 300000
}
