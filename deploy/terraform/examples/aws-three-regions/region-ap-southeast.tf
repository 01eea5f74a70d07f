# Region ap-southeast: its AWS provider and its aws-region module. Copy this file
# to add a region, then add the region to var.regions and local.region_modules.

provider "aws" {
  alias  = "ap_southeast"
  region = var.regions["ap-southeast"].aws_region
}

module "region_ap_southeast" {
  source = "../../modules/aws-region"
  providers = {
    aws     = aws.ap_southeast
    aws.dns = aws.dns
  }

  deployment         = var.deployment
  region_name        = "ap-southeast"
  aws_region         = var.regions["ap-southeast"].aws_region
  plan               = module.topology.plan
  nodes              = module.topology.nodes
  ami_id             = var.regions["ap-southeast"].ami_id
  vpc_id             = var.regions["ap-southeast"].vpc_id
  private_subnet_ids = var.regions["ap-southeast"].private_subnet_ids
  public_subnet_ids  = var.regions["ap-southeast"].public_subnet_ids
  peer_cidr_blocks   = [for name, region in var.regions : region.vpc_cidr_block if name != "ap-southeast"]
  internal_zone_id   = module.dns.internal_zone_id
  internal_domain    = module.dns.internal_domain
  certificate_arn    = var.regions["ap-southeast"].certificate_arn
}
