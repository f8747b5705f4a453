# Optional VPC placement. The functions call S3 and DynamoDB (gateway endpoints on the given route
# tables) and, with tracing, X-Ray (an interface endpoint). The mapping's stream reads, the
# on-failure sends and the log delivery happen on Lambda's side, outside the VPC.

locals {
  vpc_endpoints = var.vpc != null && try(var.vpc.create_endpoints, false)
}

resource "aws_vpc_endpoint" "gateway" {
  for_each = local.vpc_endpoints ? toset(["s3", "dynamodb"]) : toset([])

  vpc_id            = var.vpc.vpc_id
  service_name      = "com.amazonaws.${local.region}.${each.key}"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = var.vpc.route_table_ids
  tags              = merge(var.tags, { Name = "${var.name_prefix}-${each.key}" })
}

resource "aws_security_group" "endpoints" {
  count = local.vpc_endpoints && var.tracing_mode == "Active" ? 1 : 0

  name        = "${var.name_prefix}-endpoints"
  description = "HTTPS from the ${var.name_prefix} functions to interface endpoints"
  vpc_id      = var.vpc.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "endpoints" {
  for_each = local.vpc_endpoints && var.tracing_mode == "Active" ? toset(var.vpc.security_group_ids) : toset([])

  security_group_id            = aws_security_group.endpoints[0].id
  description                  = "HTTPS from the functions' security group ${each.key}"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = each.key
}

resource "aws_vpc_endpoint" "interface" {
  for_each = local.vpc_endpoints && var.tracing_mode == "Active" ? toset(["xray"]) : toset([])

  vpc_id              = var.vpc.vpc_id
  service_name        = "com.amazonaws.${local.region}.${each.key}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = var.vpc.subnet_ids
  security_group_ids  = [aws_security_group.endpoints[0].id]
  private_dns_enabled = true
  tags                = merge(var.tags, { Name = "${var.name_prefix}-${each.key}" })
}
