# Region eu-central: its AWS provider and its aws-region module. Copy this file
# to add a region, then add the region to var.regions and local.region_modules.

provider "aws" {
  alias  = "eu_central"
  region = var.regions["eu-central"].aws_region
}

module "region_eu_central" {
  source = "../../modules/aws-region"
  providers = {
    aws     = aws.eu_central
    aws.dns = aws.dns
  }

  deployment         = var.deployment
  region_name        = "eu-central"
  aws_region         = var.regions["eu-central"].aws_region
  plan               = module.topology.plan
  nodes              = module.topology.nodes
  ami_id             = var.regions["eu-central"].ami_id
  vpc_id             = var.regions["eu-central"].vpc_id
  private_subnet_ids = var.regions["eu-central"].private_subnet_ids
  public_subnet_ids  = var.regions["eu-central"].public_subnet_ids
  peer_cidr_blocks   = [for name, region in var.regions : region.vpc_cidr_block if name != "eu-central"]
  internal_zone_id   = module.dns.internal_zone_id
  internal_domain    = module.dns.internal_domain
  certificate_arn    = var.regions["eu-central"].certificate_arn
}
