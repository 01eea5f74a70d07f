# Plans the three-region root with mocked AWS providers and the values of
# terraform.tfvars.example. The mocks need the hashicorp/aws provider
# binary for its schema and make no AWS call.

mock_provider "aws" {
  alias = "dns"
}

mock_provider "aws" {
  alias = "us_east"

  mock_data "aws_vpc" {
    defaults = {
      cidr_block = "10.10.0.0/16"
    }
  }

  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{}"
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
}

mock_provider "aws" {
  alias = "eu_central"

  mock_data "aws_vpc" {
    defaults = {
      cidr_block = "10.20.0.0/16"
    }
  }

  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{}"
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
}

mock_provider "aws" {
  alias = "ap_southeast"

  mock_data "aws_vpc" {
    defaults = {
      cidr_block = "10.30.0.0/16"
    }
  }

  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{}"
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
}

variables {
  public_zone_id   = "Z0123456789EXAMPLE"
  edge_record_name = "live.example.com"
  core_record_name = "api.live.example.com"
  regions = {
    "us-east" = {
      aws_region         = "us-east-1", latitude = 39.04, longitude = -77.49, port_slot = 0
      ami_id             = "ami-0", vpc_id = "vpc-0", vpc_cidr_block = "10.10.0.0/16"
      private_subnet_ids = ["subnet-1", "subnet-2"], public_subnet_ids = ["subnet-3", "subnet-4"]
    }
    "eu-central" = {
      aws_region         = "eu-central-1", latitude = 50.11, longitude = 8.68, port_slot = 1
      ami_id             = "ami-1", vpc_id = "vpc-1", vpc_cidr_block = "10.20.0.0/16"
      private_subnet_ids = ["subnet-5", "subnet-6"], public_subnet_ids = ["subnet-7", "subnet-8"]
    }
    "ap-southeast" = {
      aws_region         = "ap-southeast-1", latitude = 1.35, longitude = 103.82, port_slot = 2
      ami_id             = "ami-2", vpc_id = "vpc-2", vpc_cidr_block = "10.30.0.0/16"
      private_subnet_ids = ["subnet-9", "subnet-10"], public_subnet_ids = ["subnet-11", "subnet-12"]
    }
  }
}

run "three_regions" {
  command = plan

  assert {
    condition     = length(jsondecode(output.plan).regions) == 3
    error_message = "The root must plan three regions."
  }

  assert {
    condition     = jsondecode(output.plan).core_region == "us-east"
    error_message = "The core must run in us-east, whose provider the core module gets."
  }

  assert {
    condition     = [for region in jsondecode(output.plan).regions : region.nats[0].client_port] == [20300, 20200, 20100]
    error_message = "Each region's ports must follow its port_slot, not its position in the map (ap-southeast, eu-central, us-east)."
  }

  assert {
    condition     = jsondecode(output.plan).bind == "0.0.0.0" && jsondecode(output.plan).core.host == "core-1.ama.internal"
    error_message = "Every node must listen on 0.0.0.0 and the core must have the host core-1.ama.internal, its record in the private zone."
  }

  assert {
    condition = alltrue(flatten([
      for region in jsondecode(output.plan).regions : [
        for node in concat(region.nats, region.region_services, region.edges) : node.host == "${node.name}.ama.internal"
      ]
    ]))
    error_message = "Every node of the plan must have the host NAME.ama.internal, the default internal_domain of the aws-global-dns module."
  }

  assert {
    condition     = module.region_eu_central.nats_urls == ["nats://eu-central-nats-1.ama.internal:20200", "nats://eu-central-nats-2.ama.internal:20204", "nats://eu-central-nats-3.ama.internal:20208"]
    error_message = "The aws-region module's NATS URLs must name the same hosts as the plan."
  }

  assert {
    condition = alltrue(flatten([
      for region in jsondecode(output.plan).regions : [
        for edge in region.edges :
        edge.public_ws_url == "ws://live.example.com/v1/ws" && edge.public_http_url == "http://live.example.com"
      ]
    ]))
    error_message = "Without a certificate_arn, every edge must carry ws:// and http:// public URLs on edge_record_name, the name of its region's load balancer record."
  }
}

run "public_urls_with_tls" {
  command = plan

  variables {
    regions = {
      "us-east" = {
        aws_region         = "us-east-1", latitude = 39.04, longitude = -77.49, port_slot = 0
        ami_id             = "ami-0", vpc_id = "vpc-0", vpc_cidr_block = "10.10.0.0/16"
        private_subnet_ids = ["subnet-1", "subnet-2"], public_subnet_ids = ["subnet-3", "subnet-4"]
        certificate_arn    = "arn:aws:acm:us-east-1:123456789012:certificate/example"
      }
      "eu-central" = {
        aws_region         = "eu-central-1", latitude = 50.11, longitude = 8.68, port_slot = 1
        ami_id             = "ami-1", vpc_id = "vpc-1", vpc_cidr_block = "10.20.0.0/16"
        private_subnet_ids = ["subnet-5", "subnet-6"], public_subnet_ids = ["subnet-7", "subnet-8"]
      }
      "ap-southeast" = {
        aws_region         = "ap-southeast-1", latitude = 1.35, longitude = 103.82, port_slot = 2
        ami_id             = "ami-2", vpc_id = "vpc-2", vpc_cidr_block = "10.30.0.0/16"
        private_subnet_ids = ["subnet-9", "subnet-10"], public_subnet_ids = ["subnet-11", "subnet-12"]
      }
    }
  }

  assert {
    condition     = alltrue(flatten([for region in jsondecode(output.plan).regions : [for edge in region.edges : edge.public_ws_url == "wss://live.example.com/v1/ws"] if region.name == "us-east"]))
    error_message = "us-east has a certificate_arn, so its load balancer listens with TLS and its edges' public WebSocket URL must use wss://."
  }

  assert {
    condition     = alltrue(flatten([for region in jsondecode(output.plan).regions : [for edge in region.edges : edge.public_http_url == "https://live.example.com"] if region.name == "us-east"]))
    error_message = "us-east has a certificate_arn, so its edges' public HTTP URL must use https://."
  }

  assert {
    condition     = [for region in jsondecode(output.plan).regions : region.edges[0].public_ws_url if region.name == "eu-central"] == ["ws://live.example.com/v1/ws"]
    error_message = "eu-central has no certificate_arn, so its edges' public WebSocket URL must use ws://."
  }
}

run "reject_region_without_module" {
  command = plan

  variables {
    regions = {
      "us-east" = {
        aws_region         = "us-east-1", latitude = 39.04, longitude = -77.49, port_slot = 0
        ami_id             = "ami-0", vpc_id = "vpc-0", vpc_cidr_block = "10.10.0.0/16"
        private_subnet_ids = ["subnet-1", "subnet-2"], public_subnet_ids = ["subnet-3", "subnet-4"]
      }
      "eu-central" = {
        aws_region         = "eu-central-1", latitude = 50.11, longitude = 8.68, port_slot = 1
        ami_id             = "ami-1", vpc_id = "vpc-1", vpc_cidr_block = "10.20.0.0/16"
        private_subnet_ids = ["subnet-5", "subnet-6"], public_subnet_ids = ["subnet-7", "subnet-8"]
      }
      "ap-southeast" = {
        aws_region         = "ap-southeast-1", latitude = 1.35, longitude = 103.82, port_slot = 2
        ami_id             = "ami-2", vpc_id = "vpc-2", vpc_cidr_block = "10.30.0.0/16"
        private_subnet_ids = ["subnet-9", "subnet-10"], public_subnet_ids = ["subnet-11", "subnet-12"]
      }
      "sa-east" = {
        aws_region         = "sa-east-1", latitude = -23.55, longitude = -46.63, port_slot = 3
        ami_id             = "ami-3", vpc_id = "vpc-3", vpc_cidr_block = "10.40.0.0/16"
        private_subnet_ids = ["subnet-13", "subnet-14"], public_subnet_ids = ["subnet-15", "subnet-16"]
      }
    }
  }

  expect_failures = [terraform_data.region_modules]
}
