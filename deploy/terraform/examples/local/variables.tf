variable "regions" {
  description = "Regions with their locations in degrees; the defaults are Ashburn, Frankfurt and Singapore, as in `ama plan`."
  type = list(object({
    name      = string
    latitude  = number
    longitude = number
  }))
  default = [
    { name = "us-east", latitude = 39.04, longitude = -77.49 },
    { name = "eu-central", latitude = 50.11, longitude = 8.68 },
    { name = "ap-southeast", latitude = 1.35, longitude = 103.82 },
  ]
}

variable "core_region" {
  description = "Region that runs the core service."
  type        = string
  default     = "us-east"
}

variable "edges_per_region" {
  description = "Number of edges in each region."
  type        = number
  default     = 1
}

variable "base_port" {
  description = "First TCP port of the plan; the plan uses ports_per_region (100) ports per region after the core's port. Check that the range is free on this machine."
  type        = number
  default     = 20000
}
