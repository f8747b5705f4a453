# Checkpoints (one item per consumer and shard), per-customer state, and the event-id store whose
# items expire through the TTL attribute the consumers write (expires_at).

locals {
  tables = {
    checkpoints = { name = local.checkpoint_table, key = "pk", ttl = null }
    state       = { name = local.state_table, key = "customer_id", ttl = null }
    event_ids   = { name = local.event_id_table, key = "event_id", ttl = "expires_at" }
  }
}

resource "aws_dynamodb_table" "this" {
  for_each = local.tables

  name                        = each.value.name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = each.value.key
  deletion_protection_enabled = var.table_deletion_protection

  attribute {
    name = each.value.key
    type = "S"
  }

  point_in_time_recovery {
    enabled = var.point_in_time_recovery
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = local.kms_key_arn
  }

  dynamic "ttl" {
    for_each = each.value.ttl == null ? [] : [each.value.ttl]
    content {
      attribute_name = ttl.value
      enabled        = true
    }
  }

  tags = var.tags
}
