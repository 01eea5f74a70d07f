# Plan-only runs of the aws-core module with a mocked AWS provider; they
# need the hashicorp/aws provider binary for its schema and no AWS call.

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
    core_region = "eu-central"
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
    core_region = "eu-central"
  }
}

run "core_and_database" {
  command = plan

  variables {
    aws_region         = "eu-central-1"
    plan               = run.topology.plan
    nodes              = run.topology.nodes
    internal_domain    = "ama.internal"
    internal_zone_id   = "Z0INTERNAL"
    ami_id             = "ami-0123456789abcdef0"
    vpc_id             = "vpc-0123456789abcdef0"
    private_subnet_ids = ["subnet-a", "subnet-b"]
    public_subnet_ids  = ["subnet-c", "subnet-d"]
    peer_cidr_blocks   = ["10.30.0.0/16"]
  }

  assert {
    condition     = aws_db_instance.core.engine == "postgres" && aws_db_instance.core.manage_master_user_password == true
    error_message = "The core's database must be PostgreSQL with its password managed by RDS."
  }

  assert {
    condition     = aws_db_instance.core.storage_encrypted && !aws_db_instance.core.publicly_accessible && aws_db_instance.core.multi_az
    error_message = "The core's database must be encrypted, private and Multi-AZ by default."
  }

  assert {
    condition     = aws_vpc_security_group_ingress_rule.database_from_core.from_port == 5432
    error_message = "Only the core's security group may reach PostgreSQL on 5432."
  }

  assert {
    condition     = aws_lb_target_group.core.port == 20000 && aws_lb_target_group.core.health_check[0].path == "/healthz"
    error_message = "The core's target group must use the plan's core port and check /healthz."
  }

  assert {
    condition     = aws_ssm_parameter.core.name == "/ama/eu-central/nodes/core-1"
    error_message = "The core's configuration must be stored under /DEPLOYMENT/CORE_REGION/nodes/CORE_NAME."
  }

  assert {
    condition     = aws_route53_record.core.name == "core-1.ama.internal" && aws_route53_record.core.name == jsondecode(run.topology.plan).core.host
    error_message = "The core must get CORE_NAME.internal_domain in the private zone, its host in the plan."
  }

  assert {
    condition     = keys(aws_vpc_security_group_ingress_rule.core_from_nodes) == ["10.10.0.0/16", "10.30.0.0/16"]
    error_message = "The core's HTTP port must be open to its VPC and peer_cidr_blocks, where edges fetch its signing keys."
  }

  assert {
    condition     = aws_instance.core.tags["Name"] == "core-1"
    error_message = "The core instance must be named after the plan's core."
  }
}

run "reject_short_backup_retention" {
  command = plan

  variables {
    aws_region               = "eu-central-1"
    plan                     = run.topology.plan
    nodes                    = run.topology.nodes
    internal_domain          = "ama.internal"
    internal_zone_id         = "Z0INTERNAL"
    ami_id                   = "ami-0123456789abcdef0"
    vpc_id                   = "vpc-0123456789abcdef0"
    private_subnet_ids       = ["subnet-a", "subnet-b"]
    public_subnet_ids        = ["subnet-c", "subnet-d"]
    db_backup_retention_days = 0
  }

  expect_failures = [var.db_backup_retention_days]
}

run "reject_plan_without_core_host" {
  command = plan

  variables {
    aws_region         = "eu-central-1"
    plan               = run.topology_without_node_domain.plan
    nodes              = run.topology_without_node_domain.nodes
    internal_domain    = "ama.internal"
    internal_zone_id   = "Z0INTERNAL"
    ami_id             = "ami-0123456789abcdef0"
    vpc_id             = "vpc-0123456789abcdef0"
    private_subnet_ids = ["subnet-a", "subnet-b"]
    public_subnet_ids  = ["subnet-c", "subnet-d"]
  }

  expect_failures = [aws_ssm_parameter.core]
}
