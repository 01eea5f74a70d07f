variable "deployment" {
  description = "Name of the deployment; prefixes resource names, IAM roles and SSM parameter paths so that several deployments can share an account."
  type        = string
  default     = "ama"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.deployment))
    error_message = "deployment must be 1 to 20 lowercase letters, digits or '-', starting with a letter; got ${jsonencode(var.deployment)}."
  }
}

variable "region_name" {
  description = "Name of this region in the topology plan (regions[].name of the topology module), such as us-east."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,64}$", var.region_name))
    error_message = "region_name must be 1 to 64 letters, digits, '-' or '_'; got ${jsonencode(var.region_name)}."
  }
}

variable "aws_region" {
  description = "AWS region that the default aws provider passed to this module manages, such as us-east-1; the nodes read their configuration from SSM in this region."
  type        = string
}

variable "plan" {
  description = "The topology plan as JSON (the topology module's plan output). Every node gets the plan, or its part of it, through SSM Parameter Store."
  type        = string

  validation {
    condition     = can(jsondecode(var.plan).regions)
    error_message = "plan must be the JSON plan from the topology module's plan output."
  }
}

variable "nodes" {
  description = "Per-node configuration from the topology module's nodes output; this module uses the entries whose region is region_name."
  type = map(object({
    region        = string
    kind          = string
    instance_type = string
    ports         = map(number)
  }))
}

variable "ami_id" {
  description = "AMI of every node in this region: Linux with systemd, the AWS CLI, and a virtual environment at venv_path where ama-mesh (which brings nats-server) is installed."
  type        = string
}

variable "venv_path" {
  description = "Path of the Python virtual environment with ama-mesh on the AMI."
  type        = string
  default     = "/opt/ama"
}

variable "vpc_id" {
  description = "VPC of this region. Its CIDR must not overlap the other regions' VPCs, which it must reach by peering or a transit gateway."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets, in at least two availability zones, for the NATS servers, region services and edges. They need outbound access to SSM (a NAT gateway or VPC endpoints)."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "private_subnet_ids must list at least two subnets, in different availability zones, so that one zone's loss leaves nodes running."
  }
}

variable "public_subnet_ids" {
  description = "Public subnets, in at least two availability zones, for the edges' internet-facing load balancer."
  type        = list(string)

  validation {
    condition     = length(var.public_subnet_ids) >= 2
    error_message = "public_subnet_ids must list at least two subnets in different availability zones; an application load balancer needs two."
  }
}

variable "peer_cidr_blocks" {
  description = "CIDR blocks of the other regions' VPCs, allowed to reach this region's NATS client and gateway ports: gateways join the supercluster, and edges and the core of other regions connect when they re-home."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for block in var.peer_cidr_blocks : can(cidrnetmask(block))])
    error_message = "peer_cidr_blocks must contain IPv4 CIDR blocks such as 10.1.0.0/16."
  }
}

variable "internal_zone_id" {
  description = "ID of the private Route 53 hosted zone that holds node names; every NATS server, region service and plan edge of this region gets a record in it."
  type        = string
}

variable "internal_domain" {
  description = "Domain of the private hosted zone, such as ama.internal; node NAME is reached as NAME.internal_domain. The topology module's node_domain must have the same value, so that every node's host in the plan is its record here."
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate for the edges' load balancer in this AWS region. With it the load balancer serves HTTPS on 443 and redirects port 80; without it (null) it serves plain HTTP on 80, for tests only."
  type        = string
  default     = null
}

variable "allowed_client_cidr_blocks" {
  description = "CIDR blocks that may reach the edges' load balancer."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "edge_max_size" {
  description = "Largest number of edge instances the Auto Scaling group may scale out to; its minimum is the number of edges in the plan."
  type        = number
  default     = 10
}

variable "edge_cpu_target" {
  description = "Average CPU utilization, in percent, that the edge Auto Scaling group's target tracking policy keeps."
  type        = number
  default     = 60

  validation {
    condition     = var.edge_cpu_target > 0 && var.edge_cpu_target <= 100
    error_message = "edge_cpu_target must be a percentage above 0 and at most 100; got ${var.edge_cpu_target}."
  }
}

variable "lb_idle_timeout" {
  description = "Idle timeout of the edges' load balancer, in seconds; a WebSocket that sends nothing for this long is closed, so it must exceed the client ping interval."
  type        = number
  default     = 300
}

variable "root_volume_size" {
  description = "Root volume size of every instance, in GiB; NATS servers keep their JetStream store on it."
  type        = number
  default     = 50
}

variable "geoip_database_path" {
  description = "Path of a MaxMind .mmdb database on the AMI for the edges' geo routing, or null to give every client the default region order."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "root_device_name" {
  description = "Device name of the AMI's root volume, which the edges' launch template sizes and encrypts (/dev/xvda on Amazon Linux, /dev/sda1 on Ubuntu)."
  type        = string
  default     = "/dev/xvda"
}

variable "jetstream_max_file_store_gib" {
  description = "Largest JetStream file store of each NATS server, in GiB; it must fit on the root volume (root_volume_size)."
  type        = number
  default     = 30

  validation {
    condition     = var.jetstream_max_file_store_gib >= 1 && var.jetstream_max_file_store_gib < var.root_volume_size
    error_message = "jetstream_max_file_store_gib must be at least 1 and below root_volume_size (${var.root_volume_size} GiB); got ${var.jetstream_max_file_store_gib}."
  }
}
