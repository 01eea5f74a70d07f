terraform {
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.60, < 7.0"
    }
  }

  # Configure a remote backend (such as S3 with state locking) before the
  # first apply; the state must outlive the machine that runs Terraform.
}
