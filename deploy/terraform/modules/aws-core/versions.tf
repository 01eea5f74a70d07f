terraform {
  required_version = ">= 1.9"

  required_providers {
    # The default aws provider is the AWS region of the core region; the
    # root passes it in.
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.60, < 7.0"
    }
  }
}
