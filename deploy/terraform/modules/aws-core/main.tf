# The AMA Mesh core in its home region: the core service behind an
# application load balancer, and an RDS PostgreSQL database whose master
# password RDS keeps in Secrets Manager.
#
# Like the region nodes, the core reads its configuration (the plan, its
# NATS URLs and the database's address) from an SSM parameter at boot.

locals {
  plan        = jsondecode(var.plan)
  core        = local.plan.core
  core_region = one([for region in local.plan.regions : region if region.name == local.plan.core_region])

  # NATS client URLs by DNS name: the core region first, then the others
  # nearest first.
  nats_urls = flatten([
    for name in local.core_region.edges[0].home_regions : [
      for region in local.plan.regions : [
        for server in region.nats : "nats://${server.name}.${var.internal_domain}:${server.client_port}"
      ] if region.name == name
    ]
  ])

  common_tags = merge(var.tags, {
    "ama:deployment" = var.deployment
    "ama:region"     = local.plan.core_region
  })

  parameter_name = "/${var.deployment}/${local.plan.core_region}/nodes/${local.core.name}"
  core_fqdn      = "${local.core.name}.${var.internal_domain}"
  https          = var.certificate_arn != null
  database_name  = "ama"
}

data "aws_vpc" "this" {
  id = var.vpc_id
}

data "aws_partition" "current" {}

data "aws_caller_identity" "current" {}

# ---------------------------------------------------------------------------
# Database
# ---------------------------------------------------------------------------

resource "aws_db_subnet_group" "core" {
  name_prefix = "${var.deployment}-core-"
  description = "AMA Mesh core database"
  subnet_ids  = var.private_subnet_ids
  tags        = local.common_tags
}

resource "aws_db_instance" "core" {
  identifier_prefix = "${var.deployment}-core-"

  engine                     = "postgres"
  engine_version             = var.db_engine_version
  auto_minor_version_upgrade = true
  instance_class             = var.db_instance_class

  allocated_storage     = var.db_allocated_storage
  max_allocated_storage = var.db_max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true

  db_name  = local.database_name
  username = "ama"
  # RDS generates the password and keeps it in Secrets Manager; it never
  # appears in the Terraform state.
  manage_master_user_password = true

  db_subnet_group_name   = aws_db_subnet_group.core.name
  vpc_security_group_ids = [aws_security_group.database.id]
  publicly_accessible    = false
  multi_az               = var.db_multi_az

  backup_retention_period   = var.db_backup_retention_days
  copy_tags_to_snapshot     = true
  deletion_protection       = var.db_deletion_protection
  skip_final_snapshot       = false
  final_snapshot_identifier = "${var.deployment}-core-final"

  tags = merge(local.common_tags, { Name = "${var.deployment}-core" })
}

# ---------------------------------------------------------------------------
# Configuration and IAM
# ---------------------------------------------------------------------------

resource "aws_ssm_parameter" "core" {
  name        = local.parameter_name
  description = "AMA Mesh configuration of the core ${local.core.name}, read at boot."
  type        = "String"
  tier        = "Intelligent-Tiering"
  tags        = local.common_tags

  lifecycle {
    # Edges fetch the core's signing keys at the core's host in the plan,
    # which must be the record this module creates.
    precondition {
      condition     = try(local.core.host, null) == local.core_fqdn
      error_message = "plan: the core must have the host ${local.core_fqdn}, the DNS record this module creates, but has ${jsonencode(try(local.core.host, null))}. Set node_domain = internal_domain in the topology module."
    }
  }

  value = jsonencode({
    name      = local.core.name
    kind      = "core"
    region    = local.plan.core_region
    plan      = local.plan
    nats_urls = local.nats_urls
    args = concat(
      ["--trusted-proxy", data.aws_vpc.this.cidr_block],
      var.geoip_database_path == null ? [] : ["--geoip", var.geoip_database_path],
    )
    # The bootstrap passes this database to the core as --database-url and
    # reads the password from the Secrets Manager secret (the core's role
    # may read it) into an environment file, never onto the command line.
    database = {
      host       = aws_db_instance.core.address
      port       = aws_db_instance.core.port
      name       = local.database_name
      username   = aws_db_instance.core.username
      secret_arn = aws_db_instance.core.master_user_secret[0].secret_arn
    }
  })
}

data "aws_iam_policy_document" "assume_ec2" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "core" {
  statement {
    sid       = "ReadNodeConfig"
    actions   = ["ssm:GetParameter"]
    resources = ["arn:${data.aws_partition.current.partition}:ssm:${var.aws_region}:${data.aws_caller_identity.current.account_id}:parameter${local.parameter_name}"]
  }

  statement {
    sid       = "ReadDatabasePassword"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_db_instance.core.master_user_secret[0].secret_arn]
  }
}

resource "aws_iam_role" "core" {
  name_prefix        = "${var.deployment}-core-"
  description        = "AMA Mesh core"
  assume_role_policy = data.aws_iam_policy_document.assume_ec2.json
  tags               = local.common_tags
}

resource "aws_iam_role_policy" "core" {
  name   = "core"
  role   = aws_iam_role.core.id
  policy = data.aws_iam_policy_document.core.json
}

resource "aws_iam_role_policy_attachment" "ssm_managed" {
  role       = aws_iam_role.core.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "core" {
  name_prefix = "${var.deployment}-core-"
  role        = aws_iam_role.core.name
  tags        = local.common_tags
}

# ---------------------------------------------------------------------------
# Security groups: clients reach the load balancer, the load balancer and
# the nodes of every region's VPC reach the core's HTTP port, and only the
# core reaches the database.
# ---------------------------------------------------------------------------

resource "aws_security_group" "lb" {
  name_prefix = "${var.deployment}-core-lb-"
  description = "Load balancer of the AMA Mesh core"
  vpc_id      = var.vpc_id
  tags        = merge(local.common_tags, { Name = "${var.deployment}-core-lb" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "core" {
  name_prefix = "${var.deployment}-core-"
  description = "AMA Mesh core instances"
  vpc_id      = var.vpc_id
  tags        = merge(local.common_tags, { Name = "${var.deployment}-core" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "database" {
  name_prefix = "${var.deployment}-core-db-"
  description = "PostgreSQL database of the AMA Mesh core"
  vpc_id      = var.vpc_id
  tags        = merge(local.common_tags, { Name = "${var.deployment}-core-db" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "lb_from_clients" {
  for_each = {
    for pair in setproduct(local.https ? [80, 443] : [80], var.allowed_client_cidr_blocks) :
    "${pair[0]} ${pair[1]}" => { port = pair[0], cidr_block = pair[1] }
  }

  security_group_id = aws_security_group.lb.id
  cidr_ipv4         = each.value.cidr_block
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  description       = "Clients to the core's load balancer"
  tags              = local.common_tags
}

resource "aws_vpc_security_group_ingress_rule" "core_from_lb" {
  security_group_id            = aws_security_group.core.id
  referenced_security_group_id = aws_security_group.lb.id
  ip_protocol                  = "tcp"
  from_port                    = local.core.http_port
  to_port                      = local.core.http_port
  description                  = "Core HTTP API and health checks from the load balancer"
  tags                         = local.common_tags
}

resource "aws_vpc_security_group_ingress_rule" "core_from_nodes" {
  for_each = toset(concat([data.aws_vpc.this.cidr_block], var.peer_cidr_blocks))

  security_group_id = aws_security_group.core.id
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = local.core.http_port
  to_port           = local.core.http_port
  description       = "Core HTTP API from the nodes of every region, which fetch its signing keys"
  tags              = local.common_tags
}

resource "aws_vpc_security_group_ingress_rule" "database_from_core" {
  security_group_id            = aws_security_group.database.id
  referenced_security_group_id = aws_security_group.core.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  description                  = "PostgreSQL from the core"
  tags                         = local.common_tags
}

resource "aws_vpc_security_group_egress_rule" "all" {
  for_each = {
    lb   = aws_security_group.lb.id
    core = aws_security_group.core.id
  }

  security_group_id = each.value
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
  description       = "All outbound traffic: NATS in every region, the database and SSM"
  tags              = local.common_tags
}

# ---------------------------------------------------------------------------
# The core instance behind its load balancer
# ---------------------------------------------------------------------------

resource "aws_instance" "core" {
  ami                    = var.ami_id
  instance_type          = var.nodes[local.core.name].instance_type
  subnet_id              = var.private_subnet_ids[0]
  vpc_security_group_ids = [aws_security_group.core.id]
  iam_instance_profile   = aws_iam_instance_profile.core.name
  user_data = templatefile("${path.module}/templates/bootstrap.sh.tftpl", {
    parameter_name = aws_ssm_parameter.core.name
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

  tags = merge(local.common_tags, { Name = local.core.name, "ama:kind" = "core" })

  lifecycle {
    # NOTE: one instance while the core keeps its log and signing keys on
    # its root volume; a replacement starts with an empty log. Replace it
    # only on purpose, with `terraform apply -replace`.
    ignore_changes = [ami]
  }
}

resource "aws_route53_record" "core" {
  provider = aws.dns

  zone_id = var.internal_zone_id
  name    = local.core_fqdn
  type    = "A"
  ttl     = 30
  records = [aws_instance.core.private_ip]
}

resource "aws_lb" "core" {
  load_balancer_type         = "application"
  internal                   = false
  security_groups            = [aws_security_group.lb.id]
  subnets                    = var.public_subnet_ids
  drop_invalid_header_fields = true
  tags                       = merge(local.common_tags, { Name = "${var.deployment}-core" })
}

resource "aws_lb_target_group" "core" {
  port                 = local.core.http_port
  protocol             = "HTTP"
  vpc_id               = var.vpc_id
  target_type          = "instance"
  deregistration_delay = 30
  tags                 = merge(local.common_tags, { Name = "${var.deployment}-core" })

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

resource "aws_lb_target_group_attachment" "core" {
  target_group_arn = aws_lb_target_group.core.arn
  target_id        = aws_instance.core.id
  port             = local.core.http_port
}

resource "aws_lb_listener" "front" {
  load_balancer_arn = aws_lb.core.arn
  port              = local.https ? 443 : 80
  protocol          = local.https ? "HTTPS" : "HTTP"
  certificate_arn   = var.certificate_arn
  ssl_policy        = local.https ? "ELBSecurityPolicy-TLS13-1-2-2021-06" : null
  tags              = local.common_tags

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.core.arn
  }
}

resource "aws_lb_listener" "redirect_to_https" {
  for_each = local.https ? toset(["http"]) : toset([])

  load_balancer_arn = aws_lb.core.arn
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
