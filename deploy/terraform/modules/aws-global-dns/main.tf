# Global DNS of an AMA Mesh deployment:
#
# - edge_record_name has one alias record per region, pointing at that
#   region's edge load balancer. Route 53 answers each resolver with the
#   region of lowest latency (or the nearest one, with geoproximity) among
#   those whose load balancer has healthy targets.
# - core_record_name points at the core's load balancer.
# - A private hosted zone, shared by every region's VPC, holds the node
#   names, which the aws-region and aws-core modules register.

resource "aws_route53_record" "edge" {
  provider = aws.dns
  for_each = var.regions

  zone_id        = var.public_zone_id
  name           = var.edge_record_name
  type           = "A"
  set_identifier = each.key

  alias {
    name                   = each.value.lb_dns_name
    zone_id                = each.value.lb_zone_id
    evaluate_target_health = true
  }

  dynamic "latency_routing_policy" {
    for_each = var.routing_policy == "latency" ? [each.value] : []

    content {
      region = latency_routing_policy.value.aws_region
    }
  }

  dynamic "geoproximity_routing_policy" {
    for_each = var.routing_policy == "geoproximity" ? [each.value] : []

    content {
      aws_region = geoproximity_routing_policy.value.aws_region
      bias       = geoproximity_routing_policy.value.bias
    }
  }
}

resource "aws_route53_record" "core" {
  provider = aws.dns

  zone_id = var.public_zone_id
  name    = var.core_record_name
  type    = "A"

  alias {
    name                   = var.core.lb_dns_name
    zone_id                = var.core.lb_zone_id
    evaluate_target_health = true
  }
}

resource "aws_route53_zone" "internal" {
  provider = aws.dns

  name    = var.internal_domain
  comment = "Node names of the AMA Mesh deployment ${var.deployment}"
  tags    = var.tags

  dynamic "vpc" {
    for_each = var.internal_zone_vpcs

    content {
      vpc_id     = vpc.value.vpc_id
      vpc_region = vpc.value.aws_region
    }
  }
}
