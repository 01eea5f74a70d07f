# Plan-only runs of the aws-global-dns module with a mocked AWS provider;
# they need the hashicorp/aws provider binary for its schema and no AWS call.

mock_provider "aws" {
  alias = "dns"
}

variables {
  public_zone_id   = "Z0PUBLIC"
  edge_record_name = "live.example.com"
  core_record_name = "api.live.example.com"
  regions = {
    "us-east"      = { aws_region = "us-east-1", lb_dns_name = "edges-us.elb.amazonaws.com", lb_zone_id = "Z35SXDOTRQ7X7K" }
    "eu-central"   = { aws_region = "eu-central-1", lb_dns_name = "edges-eu.elb.amazonaws.com", lb_zone_id = "Z215JYRZR1TBD5" }
    "ap-southeast" = { aws_region = "ap-southeast-1", lb_dns_name = "edges-ap.elb.amazonaws.com", lb_zone_id = "Z1LMS91P8CMLE5", bias = 10 }
  }
  core = { lb_dns_name = "core.elb.amazonaws.com", lb_zone_id = "Z35SXDOTRQ7X7K" }
  internal_zone_vpcs = {
    "us-east"      = { vpc_id = "vpc-1", aws_region = "us-east-1" }
    "eu-central"   = { vpc_id = "vpc-2", aws_region = "eu-central-1" }
    "ap-southeast" = { vpc_id = "vpc-3", aws_region = "ap-southeast-1" }
  }
}

run "latency_records" {
  command = plan

  assert {
    condition     = keys(aws_route53_record.edge) == ["ap-southeast", "eu-central", "us-east"]
    error_message = "There must be one edge record per region, keyed by region name."
  }

  assert {
    condition     = aws_route53_record.edge["eu-central"].latency_routing_policy[0].region == "eu-central-1"
    error_message = "Each edge record must carry its region's AWS region for latency routing."
  }

  assert {
    condition     = length(aws_route53_record.edge["eu-central"].geoproximity_routing_policy) == 0
    error_message = "Latency records must not carry a geoproximity policy."
  }

  assert {
    condition     = aws_route53_record.edge["us-east"].alias[0].evaluate_target_health
    error_message = "Edge records must skip regions whose load balancer has no healthy target."
  }

  assert {
    condition     = length(aws_route53_zone.internal.vpc) == 3
    error_message = "The private zone must be shared by every region's VPC."
  }
}

run "geoproximity_records" {
  command = plan

  variables {
    routing_policy = "geoproximity"
  }

  assert {
    condition     = aws_route53_record.edge["ap-southeast"].geoproximity_routing_policy[0].bias == 10
    error_message = "Geoproximity records must carry each region's bias."
  }

  assert {
    condition     = length(aws_route53_record.edge["ap-southeast"].latency_routing_policy) == 0
    error_message = "Geoproximity records must not carry a latency policy."
  }
}

run "reject_unknown_routing_policy" {
  command = plan

  variables {
    routing_policy = "weighted"
  }

  expect_failures = [var.routing_policy]
}

run "reject_bias_out_of_range" {
  command = plan

  variables {
    regions = {
      "us-east"      = { aws_region = "us-east-1", lb_dns_name = "a", lb_zone_id = "Z1", bias = 100 }
      "eu-central"   = { aws_region = "eu-central-1", lb_dns_name = "b", lb_zone_id = "Z2" }
      "ap-southeast" = { aws_region = "ap-southeast-1", lb_dns_name = "c", lb_zone_id = "Z3" }
    }
  }

  expect_failures = [var.regions]
}
