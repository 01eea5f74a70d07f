variable "deployment" {
  description = "Name of the deployment; prefixes resource names, IAM roles and SSM parameter paths."
  type        = string
  default     = "ama"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.deployment))
    error_message = "deployment must be 1 to 20 lowercase letters, digits or '-', starting with a letter; got ${jsonencode(var.deployment)}."
  }
}

variable "aws_region" {
  description = "AWS region that the default aws provider passed to this module manages, such as us-east-1; the core reads its configuration from SSM there."
  type        = string
}

variable "plan" {
  description = "The topology plan as JSON (the topology module's plan output); its core_region must be the region this module runs in."
  type        = string

  validation {
    condition     = can(jsondecode(var.plan).core.http_port)
    error_message = "plan must be the JSON plan from the topology module's plan output."
  }
}

variable "nodes" {
  description = "Per-node configuration from the topology module's nodes output; this module uses the core's entry."
  type = map(object({
    region        = string
    kind          = string
    instance_type = string
    ports         = map(number)
  }))
}

variable "internal_domain" {
  description = "Domain of the private hosted zone of node names, such as ama.internal; the core is reached as CORE_NAME.internal_domain. The topology module's node_domain must have the same value."
  type        = string
}

variable "internal_zone_id" {
  description = "ID of the private Route 53 hosted zone of node names, where the core gets its A record."
  type        = string
}

variable "peer_cidr_blocks" {
  description = "CIDR blocks of the other regions' VPCs, allowed to reach the core's HTTP port directly: edges fetch the core's signing keys from CORE_NAME.internal_domain."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for block in var.peer_cidr_blocks : can(cidrnetmask(block))])
    error_message = "peer_cidr_blocks must contain IPv4 CIDR blocks such as 10.1.0.0/16."
  }
}

variable "ami_id" {
  description = "AMI of the core instances: Linux with systemd, the AWS CLI, and a virtual environment at venv_path where ama-mesh is installed."
  type        = string
}

variable "venv_path" {
  description = "Path of the Python virtual environment with ama-mesh on the AMI."
  type        = string
  default     = "/opt/ama"
}

variable "vpc_id" {
  description = "VPC of the core region."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets, in at least two availability zones, for the core instances and the database."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "private_subnet_ids must list at least two subnets in different availability zones; an RDS subnet group needs two."
  }
}

variable "public_subnet_ids" {
  description = "Public subnets, in at least two availability zones, for the core's internet-facing load balancer."
  type        = list(string)

  validation {
    condition     = length(var.public_subnet_ids) >= 2
    error_message = "public_subnet_ids must list at least two subnets in different availability zones; an application load balancer needs two."
  }
}

variable "certificate_arn" {
  description = "ACM certificate for the core's load balancer. With it the load balancer serves HTTPS on 443; without it (null) it serves plain HTTP on 80, for tests only."
  type        = string
  default     = null
}

variable "allowed_client_cidr_blocks" {
  description = "CIDR blocks that may reach the core's load balancer (its API creates rooms and issues tokens)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "geoip_database_path" {
  description = "Path of a MaxMind .mmdb database on the AMI for the core's geo routing, or null to give every client the default region order."
  type        = string
  default     = null
}

variable "db_instance_class" {
  description = "RDS instance class of the core's PostgreSQL database."
  type        = string
  default     = "db.t4g.medium"
}

variable "db_engine_version" {
  description = "PostgreSQL major version of the core's database."
  type        = string
  default     = "16"
}

variable "db_allocated_storage" {
  description = "Initial storage of the database, in GiB."
  type        = number
  default     = 50
}

variable "db_max_allocated_storage" {
  description = "Largest storage, in GiB, that RDS storage autoscaling may grow the database to."
  type        = number
  default     = 500

  validation {
    condition     = var.db_max_allocated_storage >= var.db_allocated_storage
    error_message = "db_max_allocated_storage (${var.db_max_allocated_storage}) must be at least db_allocated_storage (${var.db_allocated_storage})."
  }
}

variable "db_multi_az" {
  description = "Whether RDS keeps a synchronous standby in a second availability zone."
  type        = bool
  default     = true
}

variable "db_backup_retention_days" {
  description = "Days that RDS keeps automated backups."
  type        = number
  default     = 14

  validation {
    condition     = var.db_backup_retention_days >= 1 && var.db_backup_retention_days <= 35
    error_message = "db_backup_retention_days must be between 1 and 35, the range RDS accepts; got ${var.db_backup_retention_days}."
  }
}

variable "db_deletion_protection" {
  description = "Whether RDS refuses to delete the database; turn it off before destroying a deployment on purpose."
  type        = bool
  default     = true
}

variable "root_volume_size" {
  description = "Root volume size of the core instances, in GiB."
  type        = number
  default     = 50
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
