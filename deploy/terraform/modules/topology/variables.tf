variable "regions" {
  description = <<-EOT
    Regions of the cluster, in plan order. Each region runs nats_servers NATS
    servers (one cluster, joined to the other regions over gateways),
    region_services region services and edges edges. latitude and longitude
    are in degrees and order every edge's home regions. port_slot picks the
    region's block of ports (default: its index in this list); pin it before
    removing a region from the middle of the list so that the other regions
    keep their ports. The instance types are used only by the cloud modules.
  EOT
  type = list(object({
    name                         = string
    latitude                     = number
    longitude                    = number
    nats_servers                 = optional(number, 3)
    region_services              = optional(number, 2)
    edges                        = optional(number, 2)
    port_slot                    = optional(number)
    nats_instance_type           = optional(string, "m7g.large")
    region_service_instance_type = optional(string, "c7g.large")
    edge_instance_type           = optional(string, "c7g.large")
  }))

  validation {
    # Three JetStream clusters keep the meta group's quorum (two of three)
    # when any one region is lost.
    condition     = length(var.regions) >= 3
    error_message = "regions: at least three regions are required so that JetStream keeps its meta quorum after losing one region; got ${length(var.regions)}."
  }

  validation {
    condition     = length(distinct([for region in var.regions : region.name])) == length(var.regions)
    error_message = "regions[].name: every region name must be unique; repeated: ${join(", ", distinct([for index, region in var.regions : region.name if index(var.regions[*].name, region.name) != index]))}."
  }

  validation {
    # The same rule as ama.subjects.check_token: region names are NATS
    # subject tokens and NATS cluster and gateway names.
    condition     = alltrue([for region in var.regions : can(regex("^[A-Za-z0-9_-]{1,64}$", region.name))])
    error_message = "regions[].name: use 1 to 64 letters, digits, '-' or '_' so that the name is a valid NATS subject token; invalid: ${join(", ", [for region in var.regions : jsonencode(region.name) if !can(regex("^[A-Za-z0-9_-]{1,64}$", region.name))])}."
  }

  validation {
    condition     = alltrue([for region in var.regions : region.latitude >= -90 && region.latitude <= 90])
    error_message = "regions[].latitude must be between -90 and 90 degrees; invalid: ${join(", ", [for region in var.regions : "${region.name} (${region.latitude})" if !(region.latitude >= -90 && region.latitude <= 90)])}."
  }

  validation {
    condition     = alltrue([for region in var.regions : region.longitude >= -180 && region.longitude <= 180])
    error_message = "regions[].longitude must be between -180 and 180 degrees; invalid: ${join(", ", [for region in var.regions : "${region.name} (${region.longitude})" if !(region.longitude >= -180 && region.longitude <= 180)])}."
  }

  validation {
    # A RAFT group of an even size tolerates no more failures than the odd
    # size below it, and can split evenly.
    condition = alltrue([
      for region in var.regions :
      region.nats_servers >= 1 && floor(region.nats_servers) == region.nats_servers && region.nats_servers % 2 == 1
    ])
    error_message = "regions[].nats_servers must be an odd whole number (1, 3, 5, ...) so that each region's NATS cluster keeps a majority; invalid: ${join(", ", [for region in var.regions : "${region.name} (${region.nats_servers})" if !(region.nats_servers >= 1 && floor(region.nats_servers) == region.nats_servers && region.nats_servers % 2 == 1)])}."
  }

  validation {
    condition = alltrue([
      for region in var.regions :
      region.region_services >= 1 && floor(region.region_services) == region.region_services
    ])
    error_message = "regions[].region_services must be a whole number of at least 1; invalid: ${join(", ", [for region in var.regions : "${region.name} (${region.region_services})" if !(region.region_services >= 1 && floor(region.region_services) == region.region_services)])}."
  }

  validation {
    condition = alltrue([
      for region in var.regions :
      region.edges >= 1 && floor(region.edges) == region.edges
    ])
    error_message = "regions[].edges must be a whole number of at least 1; invalid: ${join(", ", [for region in var.regions : "${region.name} (${region.edges})" if !(region.edges >= 1 && floor(region.edges) == region.edges)])}."
  }

  validation {
    condition = alltrue([
      for region in var.regions :
      region.port_slot == null ? true : (region.port_slot >= 0 && floor(region.port_slot) == region.port_slot)
    ])
    error_message = "regions[].port_slot must be a whole number of at least 0, or left unset; invalid: ${join(", ", [for region in var.regions : "${region.name} (${region.port_slot})" if region.port_slot == null ? false : !(region.port_slot >= 0 && floor(region.port_slot) == region.port_slot)])}."
  }

  validation {
    condition = length(distinct([
      for index, region in var.regions : region.port_slot == null ? index : region.port_slot
    ])) == length(var.regions)
    error_message = "regions[].port_slot: two regions use the same port slot (an unset slot is the region's index in the list); give each region its own slot."
  }

  validation {
    condition = alltrue([
      for region in var.regions :
      4 * region.nats_servers + region.region_services + 2 * region.edges <= var.ports_per_region
    ])
    error_message = "regions: a region needs 4 ports per NATS server, 1 per region service and 2 per edge, which must fit in ports_per_region (${var.ports_per_region}); too large: ${join(", ", [for region in var.regions : "${region.name} (${4 * region.nats_servers + region.region_services + 2 * region.edges} ports)" if 4 * region.nats_servers + region.region_services + 2 * region.edges > var.ports_per_region])}. Raise ports_per_region or lower the counts."
  }
}

variable "core_region" {
  description = "Name of the region that runs the core service (one of regions[].name)."
  type        = string

  validation {
    condition     = contains([for region in var.regions : region.name], var.core_region)
    error_message = "core_region ${jsonencode(var.core_region)} must be the name of one of the regions: ${join(", ", var.regions[*].name)}."
  }
}

variable "core_name" {
  description = "Node name of the core service in the plan."
  type        = string
  default     = "core-1"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,64}$", var.core_name))
    error_message = "core_name ${jsonencode(var.core_name)} is invalid: use 1 to 64 letters, digits, '-' or '_'."
  }
}

variable "core_instance_type" {
  description = "Instance type of the core service; used only by the cloud modules."
  type        = string
  default     = "c7g.large"
}

variable "host" {
  description = "Address that every node of the plan listens on and connects to (the plan's host field); 127.0.0.1 for a cluster on one machine. Nodes with their own host from node_domain use it instead."
  type        = string
  default     = "127.0.0.1"

  validation {
    condition     = length(trimspace(var.host)) > 0
    error_message = "host must not be empty."
  }
}

variable "node_domain" {
  description = <<-EOT
    DNS-name suffix of the nodes, such as ama.internal, or null. When set,
    every node (NATS server, region service, edge and core) gets its own
    host NAME.node_domain, which other nodes connect to, and the plan gets
    bind = "0.0.0.0", the address every node listens on. The names must
    resolve where the nodes run; the cloud modules create them. When null,
    every node uses host, as on one machine.
  EOT
  type        = string
  default     = null

  validation {
    condition     = var.node_domain == null || can(regex("^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?[.])*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$", var.node_domain))
    error_message = "node_domain ${jsonencode(var.node_domain)} is not a DNS-name suffix: use dot-separated labels of 1 to 63 letters, digits or '-', each starting and ending with a letter or digit, with no leading or trailing dot, such as ama.internal."
  }

  validation {
    # A node name is the first label of its DNS name.
    condition = var.node_domain == null || alltrue([
      for name in local.node_names : length(name) <= 63 && length(name) + 1 + length(var.node_domain == null ? "" : var.node_domain) <= 253
    ])
    error_message = "node_domain: every NAME.node_domain must be a valid DNS name, so each node name may have at most 63 characters and the whole name at most 253; too long: ${join(", ", [for name in local.node_names : name if length(name) > 63 || length(name) + 1 + length(var.node_domain == null ? "" : var.node_domain) > 253])}. Shorten the region names, core_name or node_domain."
  }
}

variable "base_port" {
  description = <<-EOT
    First TCP port of the plan. The core listens on base_port; the region in
    port slot s gets the ports_per_region ports that start at
    base_port + ports_per_region * (s + 1).
  EOT
  type        = number
  default     = 20000

  validation {
    condition     = var.base_port >= 1024 && floor(var.base_port) == var.base_port
    error_message = "base_port must be a whole number of at least 1024, above the privileged ports; got ${var.base_port}."
  }

  validation {
    condition     = var.base_port + local.port_span - 1 <= 65535
    error_message = "base_port: the plan's ports would run from ${var.base_port} to ${var.base_port + local.port_span - 1}, past 65535; lower base_port, ports_per_region or the regions' port_slot values."
  }

  validation {
    # 4222 is the NATS default client port: a stray nats-server or client
    # started with defaults would join or reach the plan's cluster.
    condition     = var.base_port > 4222 || var.base_port + local.port_span - 1 < 4222
    error_message = "base_port: the plan's ports would run from ${var.base_port} to ${var.base_port + local.port_span - 1}, which includes 4222, the NATS default client port; choose a base_port above 4222."
  }
}

variable "ports_per_region" {
  description = "Number of consecutive ports reserved for each region's NATS servers, region services and edges."
  type        = number
  default     = 100

  validation {
    condition     = var.ports_per_region >= 7 && floor(var.ports_per_region) == var.ports_per_region
    error_message = "ports_per_region must be a whole number of at least 7 (one NATS server, one region service and one edge); got ${var.ports_per_region}."
  }
}

variable "edge_public_urls" {
  description = <<-EOT
    Public URLs of each region's edges, keyed by region name: ws_url, the
    WebSocket URL browsers connect to (such as
    wss://us-east.ama.example.com/v1/ws), and http_url, the URL of the web
    UI (such as https://us-east.ama.example.com). They become the
    public_ws_url and public_http_url of every edge of that region, which
    the core and the edges hand to browsers in place of
    ws://HOST:WS_PORT/v1/ws and http://HOST:HTTP_PORT. A region without an
    entry keeps those host and port URLs.
  EOT
  type = map(object({
    ws_url   = string
    http_url = string
  }))
  default = {}

  validation {
    condition     = alltrue([for name in keys(var.edge_public_urls) : contains(var.regions[*].name, name)])
    error_message = "edge_public_urls: every key must be the name of one of the regions (${join(", ", var.regions[*].name)}); unknown: ${join(", ", [for name in keys(var.edge_public_urls) : jsonencode(name) if !contains(var.regions[*].name, name)])}."
  }

  validation {
    condition     = alltrue([for urls in values(var.edge_public_urls) : can(regex("^wss?://[^/?#]+", urls.ws_url))])
    error_message = "edge_public_urls[].ws_url must start with wss:// or ws:// followed by a host; invalid: ${join(", ", [for name, urls in var.edge_public_urls : "${name} (${jsonencode(urls.ws_url)})" if !can(regex("^wss?://[^/?#]+", urls.ws_url))])}."
  }

  validation {
    condition     = alltrue([for urls in values(var.edge_public_urls) : can(regex("^https?://[^/?#]+", urls.http_url))])
    error_message = "edge_public_urls[].http_url must start with https:// or http:// followed by a host; invalid: ${join(", ", [for name, urls in var.edge_public_urls : "${name} (${jsonencode(urls.http_url)})" if !can(regex("^https?://[^/?#]+", urls.http_url))])}."
  }
}
