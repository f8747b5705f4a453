variable "host" {
  description = "Address of the embedded stack."
  type        = string
  default     = "127.0.0.1"
}

variable "port" {
  description = "Port of the embedded stack (`make up PORT=...`, the test's free port)."
  type        = number
  default     = 4566

  validation {
    condition     = var.port >= 1 && var.port <= 65535
    error_message = "port must be a TCP port number."
  }
}

variable "region" {
  description = "Region the stack answers as (pipeline/settings.py: us-east-1)."
  type        = string
  default     = "us-east-1"
}

variable "name_prefix" {
  description = "Prefix of every resource name; \"pipeline\" matches the Python defaults."
  type        = string
  default     = "pipeline"
}

variable "shard_count" {
  description = "Shards of the stream (pipeline/settings.py: SHARDS, 4)."
  type        = number
  default     = 4
}

variable "function_zip" {
  description = "Function package; the local runtime imports the handlers from the checkout, so any zip works."
  type        = string
  default     = "../../../../build/function.zip"
}

variable "layer_zip" {
  description = "Dependency layer; the local runtime uses the checkout's virtualenv, so any zip works."
  type        = string
  default     = "../../../../build/layer.zip"
}

variable "event_id_dedupe" {
  description = "off, batch or table (see the module)."
  type        = string
  default     = "batch"
}

variable "functions" {
  description = "Per-consumer function settings (see the module); provisioned_concurrency must stay 0 here."
  type        = any
  default = {
    "lake-writer"  = {}
    "state-writer" = {}
  }
}

variable "esm" {
  description = "Per-consumer event source mapping settings (see the module)."
  type        = any
  default = {
    "lake-writer"  = {}
    "state-writer" = {}
  }
}

# Toggles for what the endpoint may not implement (all true/Active in prod).

variable "stream_encryption" {
  description = "KMS encryption of the stream."
  type        = bool
  default     = true
}

variable "log_encryption" {
  description = "KMS encryption of the log groups."
  type        = bool
  default     = true
}

variable "tracing_mode" {
  description = "X-Ray tracing mode of the functions."
  type        = string
  default     = "Active"
}

variable "alarms" {
  description = "CloudWatch alarms."
  type        = bool
  default     = true
}

variable "alarm_sns_topic" {
  description = "The alarm SNS topic."
  type        = bool
  default     = true
}
