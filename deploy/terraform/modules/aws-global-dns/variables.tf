variable "deployment" {
  description = "Name of the deployment; used in comments and tags of the hosted zone."
  type        = string
  default     = "ama"
}

variable "public_zone_id" {
  description = "ID of the public Route 53 hosted zone that holds edge_record_name and core_record_name."
  type        = string
}

variable "edge_record_name" {
  description = "Fully qualified name that users open, such as live.example.com; it resolves to the nearest region's edges."
  type        = string
}

variable "core_record_name" {
  description = "Fully qualified name of the core's API, such as api.live.example.com."
  type        = string
}

variable "routing_policy" {
  description = "How Route 53 picks a region for a user: latency (lowest measured latency from the user's resolver) or geoproximity (nearest by location, adjustable per region with bias)."
  type        = string
  default     = "latency"

  validation {
    condition     = contains(["latency", "geoproximity"], var.routing_policy)
    error_message = "routing_policy must be \"latency\" or \"geoproximity\"; got ${jsonencode(var.routing_policy)}."
  }
}

variable "regions" {
  description = <<-EOT
    Regions keyed by their name in the topology plan: the AWS region, the
    edges' load balancer (DNS name and zone ID from the aws-region module),
    and a geoproximity bias from -99 to 99 (positive draws users from
    farther away; used only with routing_policy geoproximity).
  EOT
  type = map(object({
    aws_region  = string
    lb_dns_name = string
    lb_zone_id  = string
    bias        = optional(number, 0)
  }))

  validation {
    condition     = length(var.regions) >= 3
    error_message = "regions must list at least three regions, like the topology plan; got ${length(var.regions)}."
  }

  validation {
    condition     = alltrue([for region in values(var.regions) : region.bias >= -99 && region.bias <= 99])
    error_message = "regions[].bias must be between -99 and 99; invalid: ${join(", ", [for name, region in var.regions : "${name} (${region.bias})" if !(region.bias >= -99 && region.bias <= 99)])}."
  }
}

variable "core" {
  description = "The core's load balancer (DNS name and zone ID from the aws-core module)."
  type = object({
    lb_dns_name = string
    lb_zone_id  = string
  })
}

variable "internal_domain" {
  description = "Domain of the private hosted zone that holds node names, such as ama.internal."
  type        = string
  default     = "ama.internal"
}

variable "internal_zone_vpcs" {
  description = "VPCs that resolve the private hosted zone, keyed by region name in the topology plan: every region's VPC, so that NATS servers and services find each other by name."
  type = map(object({
    vpc_id     = string
    aws_region = string
  }))

  validation {
    condition     = length(var.internal_zone_vpcs) >= 1
    error_message = "internal_zone_vpcs must list at least one VPC; a private hosted zone needs one."
  }
}

variable "tags" {
  description = "Tags added to the hosted zone."
  type        = map(string)
  default     = {}
}
