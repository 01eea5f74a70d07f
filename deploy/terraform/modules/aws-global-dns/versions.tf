terraform {
  required_version = ">= 1.9"

  required_providers {
    # Route 53 is a global service: the root passes the provider of the
    # account that owns the hosted zones as aws.dns.
    aws = {
      source                = "hashicorp/aws"
      version               = ">= 5.60, < 7.0"
      configuration_aliases = [aws.dns]
    }
  }
}
