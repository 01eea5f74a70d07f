terraform {
  required_version = ">= 1.9"

  required_providers {
    # The default aws provider is the AWS region of the core region; aws.dns
    # manages the core's record in the private hosted zone of node names,
    # which may live in another account or region. The root passes both.
    aws = {
      source                = "hashicorp/aws"
      version               = ">= 5.60, < 7.0"
      configuration_aliases = [aws.dns]
    }
  }
}
