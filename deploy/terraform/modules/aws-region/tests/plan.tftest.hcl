# Plan-only runs of the aws-region module with mocked AWS providers. Mocks
# need the hashicorp/aws provider binary for its schema but make no AWS
# call, so this file runs offline where the provider is in a local mirror.

mock_provider "aws" {
  mock_data "aws_vpc" {
    defaults = {
      cidr_block = "10.10.0.0/16"
    }
  }

  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }

  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }

  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{}"
    }
  }
}

mock_provider "aws" {
  alias = "dns"
}

run "topology" {
  command = plan

  module {
    source = "../topology"
  }

  variables {
    regions = [
      { name = "us-east", latitude = 39.04, longitude = -77.49 },
      { name = "eu-central", latitude = 50.11, longitude = 8.68 },
      { name = "ap-southeast", latitude = 1.35, longitude = 103.82 },
    ]
    core_region = "us-east"
    node_domain = "ama.internal"
  }
}

run "topology_without_node_domain" {
  command = plan

  module {
    source = "../topology"
  }

  variables {
    regions = [
      { name = "us-east", latitude = 39.04, longitude = -77.49 },
      { name = "eu-central", latitude = 50.11, longitude = 8.68 },
      { name = "ap-southeast", latitude = 1.35, longitude = 103.82 },
    ]
    core_region = "us-east"
  }
}

run "us_east_nodes" {
  command = plan

  variables {
    region_name        = "us-east"
    aws_region         = "us-east-1"
    plan               = run.topology.plan
    nodes              = run.topology.nodes
    ami_id             = "ami-0123456789abcdef0"
    vpc_id             = "vpc-0123456789abcdef0"
    private_subnet_ids = ["subnet-a", "subnet-b"]
    public_subnet_ids  = ["subnet-c", "subnet-d"]
    peer_cidr_blocks   = ["10.20.0.0/16", "10.30.0.0/16"]
    internal_zone_id   = "Z0INTERNAL"
    internal_domain    = "ama.internal"
  }

  assert {
    condition     = keys(aws_instance.nats) == ["us-east-nats-1", "us-east-nats-2", "us-east-nats-3"]
    error_message = "The module must create one instance per NATS server of its region, keyed by node name."
  }

  assert {
    condition     = [for name in keys(aws_instance.nats) : aws_instance.nats[name].subnet_id] == ["subnet-a", "subnet-b", "subnet-a"]
    error_message = "NATS servers must be spread over the private subnets in plan order."
  }

  assert {
    condition     = keys(aws_instance.region_service) == ["us-east-region-1", "us-east-region-2"]
    error_message = "The module must create one instance per region service, keyed by node name."
  }

  assert {
    condition     = aws_route53_record.nats["us-east-nats-2"].name == "us-east-nats-2.ama.internal"
    error_message = "Each NATS server must get NAME.internal_domain in the private zone."
  }

  assert {
    condition     = aws_route53_record.region_service["us-east-region-2"].name == "us-east-region-2.ama.internal"
    error_message = "Each region service must get NAME.internal_domain in the private zone."
  }

  assert {
    condition     = keys(aws_route53_record.edge) == ["us-east-edge-1", "us-east-edge-2"]
    error_message = "Every edge of the plan must get a record in the private zone, keyed by node name."
  }

  assert {
    # The load balancer's DNS name is known only after apply, so the plan
    # checks the record's name and that it is an alias.
    condition     = aws_route53_record.edge["us-east-edge-2"].name == "us-east-edge-2.ama.internal" && length(aws_route53_record.edge["us-east-edge-2"].alias) == 1
    error_message = "Each edge name of the plan must be an alias record of the region's edge load balancer."
  }

  assert {
    condition = alltrue([
      for node in concat(
        jsondecode(run.topology.plan).regions[0].nats,
        jsondecode(run.topology.plan).regions[0].region_services,
        jsondecode(run.topology.plan).regions[0].edges,
      ) :
      contains(concat(
        [for record in aws_route53_record.nats : record.name],
        [for record in aws_route53_record.region_service : record.name],
        [for record in aws_route53_record.edge : record.name],
      ), node.host)
    ])
    error_message = "Every node host of the region in the plan must be the name of a record this module creates."
  }

  assert {
    condition     = aws_autoscaling_group.edge.min_size == 2 && aws_autoscaling_group.edge.health_check_type == "ELB"
    error_message = "The edge group must keep at least the plan's two edges and replace those the load balancer finds unhealthy."
  }

  assert {
    condition     = aws_lb_target_group.edge_http.health_check[0].path == "/healthz"
    error_message = "The edges' target group must check /healthz."
  }

  assert {
    condition     = aws_lb_target_group.edge_http.port == 20114 && aws_lb_target_group.edge_ws.port == 20115
    error_message = "The target groups must use the ports of the region's first edge (20114 HTTP, 20115 WebSocket)."
  }

  assert {
    condition     = aws_lb_listener.front.port == 80 && length(aws_lb_listener.redirect_to_https) == 0
    error_message = "Without a certificate the load balancer must serve plain HTTP on 80."
  }

  assert {
    condition     = contains(keys(aws_vpc_security_group_ingress_rule.from_cidr), "nats-gateway 20102 10.30.0.0/16")
    error_message = "NATS gateway ports must be open to the other regions' VPCs."
  }

  assert {
    condition     = !contains(keys(aws_vpc_security_group_ingress_rule.from_cidr), "nats-monitor 20103 10.30.0.0/16")
    error_message = "NATS monitoring ports must be open only inside the region's VPC."
  }

  assert {
    condition     = aws_vpc_security_group_ingress_rule.from_group["nats-cluster 20105"].from_port == 20105
    error_message = "NATS cluster ports must be open between the region's NATS servers."
  }

  assert {
    condition     = strcontains(jsondecode(aws_ssm_parameter.node["us-east-nats-1"].value).nats_server_conf, "nats-route://us-east-nats-3.ama.internal:20109")
    error_message = "A NATS server's configuration must route to every server of its region by name."
  }

  assert {
    condition     = strcontains(jsondecode(aws_ssm_parameter.node["us-east-nats-1"].value).nats_server_conf, "nats://ap-southeast-nats-1.ama.internal:20302")
    error_message = "A NATS server's configuration must list the other regions' gateways by name."
  }

  assert {
    condition     = jsondecode(aws_ssm_parameter.node["us-east-edges"].value).nats_urls[3] == "nats://eu-central-nats-1.ama.internal:20200"
    error_message = "Edges must list their own region's NATS servers first, then the nearest other region's."
  }

  assert {
    condition     = jsondecode(aws_ssm_parameter.node["us-east-region-1"].value).plan == jsondecode(run.topology.plan)
    error_message = "Every service must receive the whole plan."
  }
}

run "https_with_certificate" {
  command = plan

  variables {
    region_name        = "eu-central"
    aws_region         = "eu-central-1"
    plan               = run.topology.plan
    nodes              = run.topology.nodes
    ami_id             = "ami-0123456789abcdef0"
    vpc_id             = "vpc-0123456789abcdef0"
    private_subnet_ids = ["subnet-a", "subnet-b"]
    public_subnet_ids  = ["subnet-c", "subnet-d"]
    internal_zone_id   = "Z0INTERNAL"
    internal_domain    = "ama.internal"
    certificate_arn    = "arn:aws:acm:eu-central-1:123456789012:certificate/example"
  }

  assert {
    condition     = aws_lb_listener.front.port == 443 && aws_lb_listener.front.protocol == "HTTPS"
    error_message = "With a certificate the load balancer must serve HTTPS on 443."
  }

  assert {
    condition     = length(aws_lb_listener.redirect_to_https) == 1
    error_message = "With a certificate port 80 must redirect to HTTPS."
  }
}

run "reject_single_private_subnet" {
  command = plan

  variables {
    region_name        = "us-east"
    aws_region         = "us-east-1"
    plan               = run.topology.plan
    nodes              = run.topology.nodes
    ami_id             = "ami-0123456789abcdef0"
    vpc_id             = "vpc-0123456789abcdef0"
    private_subnet_ids = ["subnet-a"]
    public_subnet_ids  = ["subnet-c", "subnet-d"]
    internal_zone_id   = "Z0INTERNAL"
    internal_domain    = "ama.internal"
  }

  expect_failures = [var.private_subnet_ids]
}

run "reject_plan_without_node_hosts" {
  command = plan

  variables {
    region_name        = "us-east"
    aws_region         = "us-east-1"
    plan               = run.topology_without_node_domain.plan
    nodes              = run.topology_without_node_domain.nodes
    ami_id             = "ami-0123456789abcdef0"
    vpc_id             = "vpc-0123456789abcdef0"
    private_subnet_ids = ["subnet-a", "subnet-b"]
    public_subnet_ids  = ["subnet-c", "subnet-d"]
    internal_zone_id   = "Z0INTERNAL"
    internal_domain    = "ama.internal"
  }

  expect_failures = [aws_ssm_parameter.node]
}
