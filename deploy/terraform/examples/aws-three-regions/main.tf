# Three AMA Mesh regions on AWS, with the core in us-east.
#
# Terraform 1.11 cannot pick a provider per for_each instance, so every
# region has its own file, region-NAME.tf, with an aliased aws provider and
# one aws-region module block. Everything else is keyed by region name.

locals {
  # The core runs in the region whose provider the core module gets below.
  core_region = "us-east"

  # One entry per region-NAME.tf file.
  region_modules = {
    "us-east"      = module.region_us_east
    "eu-central"   = module.region_eu_central
    "ap-southeast" = module.region_ap_southeast
  }
}

provider "aws" {
  alias  = "dns"
  region = var.dns_aws_region
}

# Fails the plan when var.regions and the region-NAME.tf files disagree.
resource "terraform_data" "region_modules" {
  input = sort(keys(var.regions))

  lifecycle {
    precondition {
      condition     = sort(keys(var.regions)) == sort(keys(local.region_modules))
      error_message = "regions lists ${join(", ", sort(keys(var.regions)))} but region modules exist for ${join(", ", sort(keys(local.region_modules)))}; add or remove a region-NAME.tf file and its line in local.region_modules."
    }
  }
}

module "topology" {
  source = "../../modules/topology"

  regions = [
    for name, region in var.regions : {
      name                         = name
      latitude                     = region.latitude
      longitude                    = region.longitude
      port_slot                    = region.port_slot
      nats_servers                 = region.nats_servers
      region_services              = region.region_services
      edges                        = region.edges
      nats_instance_type           = region.nats_instance_type
      region_service_instance_type = region.region_service_instance_type
      edge_instance_type           = region.edge_instance_type
    }
  ]
  core_region = local.core_region
  # Every node gets the host NAME.internal_domain, the record that the
  # aws-region and aws-core modules create for it, and listens on 0.0.0.0.
  node_domain = module.dns.internal_domain
  base_port   = var.base_port

  # Browsers reach the edges only through each region's public load
  # balancer, so the core and the edges hand them the public name that
  # resolves to it: the region's alias record under edge_record_name. The
  # load balancer listens on 443 with TLS when the region has a
  # certificate_arn, else on 80, and forwards /v1/ws to the edges'
  # WebSocket port and every other path to their HTTP port.
  # NOTE: every region's record has the same name, so a browser sent to a
  # region's URL reaches the region that Route 53 picks for it (the lowest
  # latency or the nearest healthy one), not always the region that the
  # core's edge order names.
  edge_public_urls = {
    for name, region in var.regions : name => {
      ws_url   = "${region.certificate_arn != null ? "wss" : "ws"}://${module.dns.edge_fqdn}/v1/ws"
      http_url = "${region.certificate_arn != null ? "https" : "http"}://${module.dns.edge_fqdn}"
    }
  }
}

module "core" {
  source = "../../modules/aws-core"
  providers = {
    aws     = aws.us_east
    aws.dns = aws.dns
  }

  deployment         = var.deployment
  aws_region         = var.regions[local.core_region].aws_region
  plan               = module.topology.plan
  nodes              = module.topology.nodes
  internal_zone_id   = module.dns.internal_zone_id
  internal_domain    = module.dns.internal_domain
  peer_cidr_blocks   = [for name, region in var.regions : region.vpc_cidr_block if name != local.core_region]
  ami_id             = var.regions[local.core_region].ami_id
  vpc_id             = var.regions[local.core_region].vpc_id
  private_subnet_ids = var.regions[local.core_region].private_subnet_ids
  public_subnet_ids  = var.regions[local.core_region].public_subnet_ids
  certificate_arn    = var.core_certificate_arn
}

module "dns" {
  source = "../../modules/aws-global-dns"
  providers = {
    aws.dns = aws.dns
  }

  deployment       = var.deployment
  public_zone_id   = var.public_zone_id
  edge_record_name = var.edge_record_name
  core_record_name = var.core_record_name
  routing_policy   = var.routing_policy

  regions = {
    for name, region in local.region_modules : name => {
      aws_region  = var.regions[name].aws_region
      lb_dns_name = region.lb_dns_name
      lb_zone_id  = region.lb_zone_id
    }
  }

  core = {
    lb_dns_name = module.core.lb_dns_name
    lb_zone_id  = module.core.lb_zone_id
  }

  internal_zone_vpcs = {
    for name, region in var.regions : name => {
      vpc_id     = region.vpc_id
      aws_region = region.aws_region
    }
  }
}
