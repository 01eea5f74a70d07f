# One AMA Mesh region on AWS: the region's NATS cluster, its region
# services, and its edges in an Auto Scaling group behind an application
# load balancer.
#
# Every node reads its configuration (its part of the topology plan) from an
# SSM parameter at boot; user_data holds only the parameter's name. A plan
# change, such as a new region elsewhere, therefore updates parameters in
# place and replaces no instance here.

locals {
  plan   = jsondecode(var.plan)
  region = one([for region in local.plan.regions : region if region.name == var.region_name])

  plan_regions = { for region in local.plan.regions : region.name => region }

  # Plan order, nearest first; every edge of a region shares its location.
  home_regions = local.region.edges[0].home_regions

  common_tags = merge(var.tags, {
    "ama:deployment" = var.deployment
    "ama:region"     = var.region_name
  })

  parameter_prefix = "/${var.deployment}/${var.region_name}/nodes"
  https            = var.certificate_arn != null
}

data "aws_vpc" "this" {
  id = var.vpc_id
}

data "aws_partition" "current" {}

data "aws_caller_identity" "current" {}

# ---------------------------------------------------------------------------
# Node configuration
# ---------------------------------------------------------------------------

locals {
  nats_servers    = { for index, server in local.region.nats : server.name => merge(server, { index = index }) }
  region_services = { for index, service in local.region.region_services : service.name => merge(service, { index = index }) }

  # Edges run in one Auto Scaling group, so every edge instance listens on
  # the ports of the region's first edge in the plan.
  edge_template = local.region.edges[0]
  edge_count    = length(local.region.edges)
  edges         = { for edge in local.region.edges : edge.name => edge }

  # Every node of this region must have the host NAME.internal_domain in the
  # plan (the topology module's node_domain), the name of the record that
  # this module creates for it. Otherwise the services would connect to
  # addresses that no record resolves.
  plan_host_mismatches = [
    for node in concat(local.region.nats, local.region.region_services, local.region.edges) :
    "${node.name} (${jsonencode(try(node.host, null))})" if try(node.host, null) != "${node.name}.${var.internal_domain}"
  ]

  # NATS client URLs by DNS name, home region first, then the others
  # nearest first, so that a service re-homes to the nearest live region.
  # The services build the same URLs from the plan's per-node hosts.
  service_nats_urls = flatten([
    for name in local.home_regions : [
      for server in local.plan_regions[name].nats : "nats://${server.name}.${var.internal_domain}:${server.client_port}"
    ]
  ])

  nats_server_conf = {
    for name, server in local.nats_servers : name => templatefile("${path.module}/templates/nats-server.conf.tftpl", {
      server_name   = name
      cluster_name  = var.region_name
      address       = "${name}.${var.internal_domain}"
      client_port   = server.client_port
      cluster_port  = server.cluster_port
      gateway_port  = server.gateway_port
      monitor_port  = server.monitor_port
      store_dir     = "/var/lib/ama/nats"
      max_file_byte = var.jetstream_max_file_store_gib * 1073741824
      # A route to itself is ignored by nats-server, and a one-server region
      # still needs one route for JetStream in a supercluster.
      routes = [for peer in local.region.nats : "nats-route://${peer.name}.${var.internal_domain}:${peer.cluster_port}"]
      gateways = [
        for other in local.plan.regions : {
          name = other.name
          urls = [for peer in other.nats : "nats://${peer.name}.${var.internal_domain}:${peer.gateway_port}"]
        } if other.name != var.region_name
      ]
    })
  }

  routing_args = concat(
    ["--trusted-proxy", data.aws_vpc.this.cidr_block],
    var.geoip_database_path == null ? [] : ["--geoip", var.geoip_database_path],
  )

  node_configs = merge(
    {
      for name, server in local.nats_servers : name => {
        name             = name
        kind             = "nats"
        region           = var.region_name
        nats_server_conf = local.nats_server_conf[name]
      }
    },
    {
      for name, service in local.region_services : name => {
        name      = name
        kind      = "region"
        region    = var.region_name
        plan      = local.plan
        nats_urls = local.service_nats_urls
        args      = []
      }
    },
    {
      # One configuration for the whole edge group: each instance names
      # itself REGION-edge-INSTANCE_ID from the template edge at boot.
      "${var.region_name}-edges" = {
        name          = local.edge_template.name
        kind          = "edge"
        region        = var.region_name
        edge_template = local.edge_template.name
        plan          = local.plan
        nats_urls     = local.service_nats_urls
        args          = local.routing_args
      }
    },
  )
}

resource "aws_ssm_parameter" "node" {
  for_each = local.node_configs

  name        = "${local.parameter_prefix}/${each.key}"
  description = "AMA Mesh configuration of ${each.key}, read at boot."
  type        = "String"
  # Intelligent-Tiering moves a value above 4 KB to the advanced tier, whose
  # limit is 8 KB.
  tier  = "Intelligent-Tiering"
  value = jsonencode(each.value)
  tags  = local.common_tags

  lifecycle {
    precondition {
      condition     = length(local.plan_host_mismatches) == 0
      error_message = "plan: every node of region ${var.region_name} must have the host NAME.${var.internal_domain}, the DNS record this module creates, but these do not: ${join(", ", local.plan_host_mismatches)}. Set node_domain = internal_domain in the topology module."
    }

    precondition {
      condition     = length(jsonencode(each.value)) <= 8192
      error_message = "The configuration of ${each.key} is ${length(jsonencode(each.value))} bytes, over the 8 KB limit of an SSM parameter; use fewer regions or edges per region."
    }
  }
}

# ---------------------------------------------------------------------------
# IAM: nodes read their own region's parameters and are reachable through
# SSM Session Manager, so no SSH port is opened.
# ---------------------------------------------------------------------------

data "aws_iam_policy_document" "assume_ec2" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "read_config" {
  statement {
    actions   = ["ssm:GetParameter"]
    resources = ["arn:${data.aws_partition.current.partition}:ssm:${var.aws_region}:${data.aws_caller_identity.current.account_id}:parameter${local.parameter_prefix}/*"]
  }
}

resource "aws_iam_role" "node" {
  name_prefix        = "${var.deployment}-node-"
  description        = "AMA Mesh nodes of region ${var.region_name}"
  assume_role_policy = data.aws_iam_policy_document.assume_ec2.json
  tags               = local.common_tags
}

resource "aws_iam_role_policy" "read_config" {
  name   = "read-node-config"
  role   = aws_iam_role.node.id
  policy = data.aws_iam_policy_document.read_config.json
}

resource "aws_iam_role_policy_attachment" "ssm_managed" {
  role       = aws_iam_role.node.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "node" {
  name_prefix = "${var.deployment}-node-"
  role        = aws_iam_role.node.name
  tags        = local.common_tags
}

# ---------------------------------------------------------------------------
# Security groups
# ---------------------------------------------------------------------------

resource "aws_security_group" "nats" {
  name_prefix = "${var.deployment}-nats-"
  description = "NATS servers of AMA Mesh region ${var.region_name}"
  vpc_id      = var.vpc_id
  tags        = merge(local.common_tags, { Name = "${var.deployment}-${var.region_name}-nats" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "region_service" {
  name_prefix = "${var.deployment}-region-"
  description = "Region services of AMA Mesh region ${var.region_name}"
  vpc_id      = var.vpc_id
  tags        = merge(local.common_tags, { Name = "${var.deployment}-${var.region_name}-region" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "edge" {
  name_prefix = "${var.deployment}-edge-"
  description = "Edges of AMA Mesh region ${var.region_name}"
  vpc_id      = var.vpc_id
  tags        = merge(local.common_tags, { Name = "${var.deployment}-${var.region_name}-edge" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "lb" {
  name_prefix = "${var.deployment}-edge-lb-"
  description = "Load balancer of the edges of AMA Mesh region ${var.region_name}"
  vpc_id      = var.vpc_id
  tags        = merge(local.common_tags, { Name = "${var.deployment}-${var.region_name}-edge-lb" })

  lifecycle {
    create_before_destroy = true
  }
}

locals {
  internal_cidr_blocks = concat([data.aws_vpc.this.cidr_block], var.peer_cidr_blocks)

  # Rules from CIDR blocks, keyed "purpose port cidr".
  cidr_ingress_rules = merge(
    merge([
      for name, server in local.nats_servers : merge(
        {
          for block in local.internal_cidr_blocks : "nats-client ${server.client_port} ${block}" => {
            security_group_id = aws_security_group.nats.id
            port              = server.client_port
            cidr_block        = block
            description       = "NATS clients to ${name}"
          }
        },
        {
          for block in local.internal_cidr_blocks : "nats-gateway ${server.gateway_port} ${block}" => {
            security_group_id = aws_security_group.nats.id
            port              = server.gateway_port
            cidr_block        = block
            description       = "NATS gateways of other regions to ${name}"
          }
        },
        {
          "nats-monitor ${server.monitor_port} ${data.aws_vpc.this.cidr_block}" = {
            security_group_id = aws_security_group.nats.id
            port              = server.monitor_port
            cidr_block        = data.aws_vpc.this.cidr_block
            description       = "NATS monitoring of ${name}"
          }
        },
      )
    ]...),
    {
      for name, service in local.region_services : "region-http ${service.http_port} ${data.aws_vpc.this.cidr_block}" => {
        security_group_id = aws_security_group.region_service.id
        port              = service.http_port
        cidr_block        = data.aws_vpc.this.cidr_block
        description       = "Health checks of ${name}"
      }
    },
    merge([
      for port in local.https ? [80, 443] : [80] : {
        for block in var.allowed_client_cidr_blocks : "lb-listener ${port} ${block}" => {
          security_group_id = aws_security_group.lb.id
          port              = port
          cidr_block        = block
          description       = "Clients to the edges' load balancer"
        }
      }
    ]...),
  )

  # Rules from other security groups, keyed "purpose port".
  group_ingress_rules = merge(
    {
      for name, server in local.nats_servers : "nats-cluster ${server.cluster_port}" => {
        security_group_id = aws_security_group.nats.id
        source_group_id   = aws_security_group.nats.id
        port              = server.cluster_port
        description       = "NATS routes within region ${var.region_name} to ${name}"
      }
    },
    {
      "edge-http ${local.edge_template.http_port}" = {
        security_group_id = aws_security_group.edge.id
        source_group_id   = aws_security_group.lb.id
        port              = local.edge_template.http_port
        description       = "Edge HTTP and health checks from the load balancer"
      }
      "edge-ws ${local.edge_template.ws_port}" = {
        security_group_id = aws_security_group.edge.id
        source_group_id   = aws_security_group.lb.id
        port              = local.edge_template.ws_port
        description       = "Edge WebSockets from the load balancer"
      }
    },
  )

  egress_groups = {
    nats           = aws_security_group.nats.id
    region_service = aws_security_group.region_service.id
    edge           = aws_security_group.edge.id
    lb             = aws_security_group.lb.id
  }
}

resource "aws_vpc_security_group_ingress_rule" "from_cidr" {
  for_each = local.cidr_ingress_rules

  security_group_id = each.value.security_group_id
  cidr_ipv4         = each.value.cidr_block
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  description       = each.value.description
  tags              = local.common_tags
}

resource "aws_vpc_security_group_ingress_rule" "from_group" {
  for_each = local.group_ingress_rules

  security_group_id            = each.value.security_group_id
  referenced_security_group_id = each.value.source_group_id
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
  description                  = each.value.description
  tags                         = local.common_tags
}

resource "aws_vpc_security_group_egress_rule" "all" {
  for_each = local.egress_groups

  security_group_id = each.value
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
  description       = "All outbound traffic: NATS peers, SSM and package mirrors"
  tags              = local.common_tags
}

# ---------------------------------------------------------------------------
# NATS servers and region services: one instance per node of the plan,
# spread over the private subnets in plan order.
# ---------------------------------------------------------------------------

resource "aws_instance" "nats" {
  for_each = local.nats_servers

  ami                    = var.ami_id
  instance_type          = var.nodes[each.key].instance_type
  subnet_id              = var.private_subnet_ids[each.value.index % length(var.private_subnet_ids)]
  vpc_security_group_ids = [aws_security_group.nats.id]
  iam_instance_profile   = aws_iam_instance_profile.node.name
  user_data = templatefile("${path.module}/templates/bootstrap.sh.tftpl", {
    parameter_name = aws_ssm_parameter.node[each.key].name
    aws_region     = var.aws_region
    venv_path      = var.venv_path
  })

  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required"
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = var.root_volume_size
    encrypted   = true
  }

  tags = merge(local.common_tags, { Name = each.key, "ama:kind" = "nats" })

  lifecycle {
    # A new AMI would replace every server of the cluster at once and lose
    # the region's quorum; roll servers one at a time with
    # `terraform apply -replace=...` instead.
    ignore_changes = [ami]
  }
}

resource "aws_route53_record" "nats" {
  provider = aws.dns
  for_each = local.nats_servers

  zone_id = var.internal_zone_id
  name    = "${each.key}.${var.internal_domain}"
  type    = "A"
  ttl     = 30
  records = [aws_instance.nats[each.key].private_ip]
}

resource "aws_instance" "region_service" {
  for_each = local.region_services

  ami                    = var.ami_id
  instance_type          = var.nodes[each.key].instance_type
  subnet_id              = var.private_subnet_ids[each.value.index % length(var.private_subnet_ids)]
  vpc_security_group_ids = [aws_security_group.region_service.id]
  iam_instance_profile   = aws_iam_instance_profile.node.name
  user_data = templatefile("${path.module}/templates/bootstrap.sh.tftpl", {
    parameter_name = aws_ssm_parameter.node[each.key].name
    aws_region     = var.aws_region
    venv_path      = var.venv_path
  })

  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required"
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = var.root_volume_size
    encrypted   = true
  }

  tags = merge(local.common_tags, { Name = each.key, "ama:kind" = "region" })

  # The services connect to NATS by name at start.
  depends_on = [aws_route53_record.nats]
}

resource "aws_route53_record" "region_service" {
  provider = aws.dns
  for_each = local.region_services

  zone_id = var.internal_zone_id
  name    = "${each.key}.${var.internal_domain}"
  type    = "A"
  ttl     = 30
  records = [aws_instance.region_service[each.key].private_ip]
}

# ---------------------------------------------------------------------------
# Edges: an Auto Scaling group behind an application load balancer.
# Requests to /v1/ws go to the WebSocket port, everything else (the web UI
# and /healthz) to the HTTP port. Both target groups check /healthz on the
# HTTP port, and the group replaces instances the load balancer reports
# unhealthy.
# ---------------------------------------------------------------------------

resource "aws_lb" "edge" {
  load_balancer_type         = "application"
  internal                   = false
  security_groups            = [aws_security_group.lb.id]
  subnets                    = var.public_subnet_ids
  idle_timeout               = var.lb_idle_timeout
  drop_invalid_header_fields = true
  tags                       = merge(local.common_tags, { Name = "${var.deployment}-${var.region_name}-edges" })
}

# The plan's edges are not instances: the Auto Scaling group runs any
# number of them behind the load balancer, and each instance names itself
# at boot and copies the host of its template edge. So every edge name of
# the plan resolves to the load balancer, the one address that reaches the
# region's edges.
# Browsers cannot use these names, because the private zone resolves only
# inside the VPCs. The plan's public_ws_url and public_http_url of each edge
# (the topology module's edge_public_urls) give browsers the public name of
# this load balancer instead.
resource "aws_route53_record" "edge" {
  provider = aws.dns
  for_each = local.edges

  zone_id = var.internal_zone_id
  name    = "${each.key}.${var.internal_domain}"
  type    = "A"

  alias {
    name                   = aws_lb.edge.dns_name
    zone_id                = aws_lb.edge.zone_id
    evaluate_target_health = false
  }
}

resource "aws_lb_target_group" "edge_http" {
  port                 = local.edge_template.http_port
  protocol             = "HTTP"
  vpc_id               = var.vpc_id
  target_type          = "instance"
  deregistration_delay = 30
  tags                 = merge(local.common_tags, { Name = "${var.deployment}-${var.region_name}-edge-http" })

  health_check {
    path                = "/healthz"
    port                = "traffic-port"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }
}

resource "aws_lb_target_group" "edge_ws" {
  port                 = local.edge_template.ws_port
  protocol             = "HTTP"
  vpc_id               = var.vpc_id
  target_type          = "instance"
  deregistration_delay = 30
  tags                 = merge(local.common_tags, { Name = "${var.deployment}-${var.region_name}-edge-ws" })

  health_check {
    path                = "/healthz"
    port                = tostring(local.edge_template.http_port)
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }
}

resource "aws_lb_listener" "front" {
  load_balancer_arn = aws_lb.edge.arn
  port              = local.https ? 443 : 80
  protocol          = local.https ? "HTTPS" : "HTTP"
  certificate_arn   = var.certificate_arn
  ssl_policy        = local.https ? "ELBSecurityPolicy-TLS13-1-2-2021-06" : null
  tags              = local.common_tags

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.edge_http.arn
  }
}

resource "aws_lb_listener" "redirect_to_https" {
  for_each = local.https ? toset(["http"]) : toset([])

  load_balancer_arn = aws_lb.edge.arn
  port              = 80
  protocol          = "HTTP"
  tags              = local.common_tags

  default_action {
    type = "redirect"

    redirect {
      port        = "443"
      protocol    = "HTTPS"
      status_code = "HTTP_301"
    }
  }
}

resource "aws_lb_listener_rule" "websocket" {
  listener_arn = aws_lb_listener.front.arn
  priority     = 10
  tags         = local.common_tags

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.edge_ws.arn
  }

  condition {
    path_pattern {
      values = ["/v1/ws"]
    }
  }
}

resource "aws_launch_template" "edge" {
  name_prefix            = "${var.deployment}-${var.region_name}-edge-"
  description            = "AMA Mesh edges of region ${var.region_name}"
  image_id               = var.ami_id
  instance_type          = var.nodes[local.edge_template.name].instance_type
  vpc_security_group_ids = [aws_security_group.edge.id]
  update_default_version = true
  user_data = base64encode(templatefile("${path.module}/templates/bootstrap.sh.tftpl", {
    parameter_name = aws_ssm_parameter.node["${var.region_name}-edges"].name
    aws_region     = var.aws_region
    venv_path      = var.venv_path
  }))

  iam_instance_profile {
    name = aws_iam_instance_profile.node.name
  }

  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required"
  }

  block_device_mappings {
    device_name = var.root_device_name

    ebs {
      volume_type = "gp3"
      volume_size = var.root_volume_size
      encrypted   = true
    }
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(local.common_tags, { Name = "${var.region_name}-edge", "ama:kind" = "edge" })
  }

  tags = local.common_tags
}

resource "aws_autoscaling_group" "edge" {
  name_prefix               = "${var.deployment}-${var.region_name}-edge-"
  vpc_zone_identifier       = var.private_subnet_ids
  min_size                  = local.edge_count
  max_size                  = max(var.edge_max_size, local.edge_count)
  health_check_type         = "ELB"
  health_check_grace_period = 120
  target_group_arns         = [aws_lb_target_group.edge_http.arn, aws_lb_target_group.edge_ws.arn]

  launch_template {
    id      = aws_launch_template.edge.id
    version = aws_launch_template.edge.latest_version
  }

  # A new launch template version (new AMI or instance type) replaces edges
  # in batches; their clients reconnect to the other edges meanwhile.
  instance_refresh {
    strategy = "Rolling"

    preferences {
      min_healthy_percentage = 50
    }
  }

  dynamic "tag" {
    for_each = merge(local.common_tags, { "ama:kind" = "edge" })

    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  # Edges connect to NATS by name at start.
  depends_on = [aws_route53_record.nats]
}

resource "aws_autoscaling_policy" "edge_cpu" {
  name                   = "cpu-target-tracking"
  autoscaling_group_name = aws_autoscaling_group.edge.name
  policy_type            = "TargetTrackingScaling"

  target_tracking_configuration {
    target_value = var.edge_cpu_target

    predefined_metric_specification {
      predefined_metric_type = "ASGAverageCPUUtilization"
    }
  }
}
