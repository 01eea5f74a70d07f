# Region us-east: its AWS provider and its aws-region module. Copy this file
# to add a region, then add the region to var.regions and local.region_modules.

provider "aws" {
  alias  = "us_east"
  region = var.regions["us-east"].aws_region
}

module "region_us_east" {
  source = "../../modules/aws-region"
  providers = {
    aws     = aws.us_east
    aws.dns = aws.dns
  }

  deployment         = var.deployment
  region_name        = "us-east"
  aws_region         = var.regions["us-east"].aws_region
  plan               = module.topology.plan
  nodes              = module.topology.nodes
  ami_id             = var.regions["us-east"].ami_id
  vpc_id             = var.regions["us-east"].vpc_id
  private_subnet_ids = var.regions["us-east"].private_subnet_ids
  public_subnet_ids  = var.regions["us-east"].public_subnet_ids
  peer_cidr_blocks   = [for name, region in var.regions : region.vpc_cidr_block if name != "us-east"]
  internal_zone_id   = module.dns.internal_zone_id
  internal_domain    = module.dns.internal_domain
  certificate_arn    = var.regions["us-east"].certificate_arn
}
