variable "deployment" {
  description = "Name of the deployment; prefixes resource names, IAM roles and SSM parameter paths."
  type        = string
  default     = "ama"
}

variable "regions" {
  description = <<-EOT
    Regions keyed by their name in the topology plan. Each needs its AWS
    region, location in degrees, a port_slot that never changes once the
    region exists (so that adding or removing regions moves no other
    region's ports), node counts, an AMI with ama-mesh installed, and an
    existing VPC with its CIDR block and private and public subnets in at
    least two availability zones. The VPCs must reach each other (peering or
    a transit gateway). Every name here also needs a provider and a module
    block in a region-NAME.tf file.
  EOT
  type = map(object({
    aws_region                   = string
    latitude                     = number
    longitude                    = number
    port_slot                    = number
    nats_servers                 = optional(number, 3)
    region_services              = optional(number, 2)
    edges                        = optional(number, 2)
    nats_instance_type           = optional(string, "m7g.large")
    region_service_instance_type = optional(string, "c7g.large")
    edge_instance_type           = optional(string, "c7g.large")
    ami_id                       = string
    vpc_id                       = string
    vpc_cidr_block               = string
    private_subnet_ids           = list(string)
    public_subnet_ids            = list(string)
    certificate_arn              = optional(string)
  }))
}

variable "base_port" {
  description = "First TCP port of the plan; see the topology module for the layout."
  type        = number
  default     = 20000
}

variable "public_zone_id" {
  description = "ID of the public Route 53 hosted zone for edge_record_name and core_record_name."
  type        = string
}

variable "edge_record_name" {
  description = "Name that users open, such as live.example.com."
  type        = string
}

variable "core_record_name" {
  description = "Name of the core's API, such as api.live.example.com."
  type        = string
}

variable "core_certificate_arn" {
  description = "ACM certificate for core_record_name in the core's AWS region, or null for plain HTTP (tests only)."
  type        = string
  default     = null
}

variable "routing_policy" {
  description = "Route 53 routing policy of edge_record_name: latency or geoproximity."
  type        = string
  default     = "latency"
}

variable "dns_aws_region" {
  description = "AWS region of the provider that manages the Route 53 hosted zones (Route 53 itself is global)."
  type        = string
  default     = "us-east-1"
}
