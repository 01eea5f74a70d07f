terraform {
  # Cross-variable validation conditions need Terraform 1.9 or newer.
  required_version = ">= 1.9"
}
