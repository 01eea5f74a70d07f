# The topology plan that `ama up --plan` starts and that the cloud modules
# hand to each node: regions, their NATS servers, region services and edges,
# every port, and each edge's home regions ordered nearest first.
#
# This module uses no provider. Everything is computed in locals so that
# `terraform test` runs offline.

locals {
  plan_version = 1

  region_names = [for region in var.regions : region.name]
  regions_by_name = {
    for index, region in var.regions : region.name => merge(region, { index = index })
  }

  # A region without a port_slot takes its index in var.regions.
  port_slots = [
    for index, region in var.regions : region.port_slot == null ? index : region.port_slot
  ]
}

# ---------------------------------------------------------------------------
# Ports
#
# The core listens on base_port. The region in port slot s owns the block
# [base_port + ports_per_region * (s + 1), + ports_per_region). Inside a
# block the ports are laid out in this order: 4 per NATS server (client,
# cluster, gateway, monitor), 1 per region service, then 2 per edge (HTTP,
# WebSocket). Changing a region's counts moves only that region's ports.
# ---------------------------------------------------------------------------

locals {
  core_port = var.base_port

  region_first_port = {
    for index, region in var.regions :
    region.name => var.base_port + var.ports_per_region * (local.port_slots[index] + 1)
  }

  nats_servers = {
    for region in var.regions : region.name => [
      for i in range(region.nats_servers) : {
        name         = "${region.name}-nats-${i + 1}"
        client_port  = local.region_first_port[region.name] + 4 * i
        cluster_port = local.region_first_port[region.name] + 4 * i + 1
        gateway_port = local.region_first_port[region.name] + 4 * i + 2
        monitor_port = local.region_first_port[region.name] + 4 * i + 3
      }
    ]
  }

  region_services = {
    for region in var.regions : region.name => [
      for i in range(region.region_services) : {
        name      = "${region.name}-region-${i + 1}"
        http_port = local.region_first_port[region.name] + 4 * region.nats_servers + i
      }
    ]
  }

  edge_ports = {
    for region in var.regions : region.name => [
      for i in range(region.edges) : {
        name      = "${region.name}-edge-${i + 1}"
        http_port = local.region_first_port[region.name] + 4 * region.nats_servers + region.region_services + 2 * i
        ws_port   = local.region_first_port[region.name] + 4 * region.nats_servers + region.region_services + 2 * i + 1
      }
    ]
  }

  all_ports = concat(
    [local.core_port],
    flatten([
      for region in var.regions : concat(
        [for server in local.nats_servers[region.name] : [server.client_port, server.cluster_port, server.gateway_port, server.monitor_port]],
        [for service in local.region_services[region.name] : service.http_port],
        [for edge in local.edge_ports[region.name] : [edge.http_port, edge.ws_port]],
      )
    ]),
  )

  # Number of ports from base_port to the end of the highest region block.
  port_span = var.ports_per_region * (max(concat([-1], local.port_slots)...) + 2)
}

# ---------------------------------------------------------------------------
# Great-circle distances
#
# Terraform has no trigonometric functions, so sine and arcsine are
# evaluated from their Taylor series. Every sine argument below lies in
# [-pi, pi], where the series to x^21 is off by less than 1e-9; the arcsine
# argument is first reduced to [0, 0.5] with
# asin(s) = pi/2 - 2 * asin(sqrt((1 - s) / 2)), where 20 terms are off by
# less than 1e-12. The haversine formula and the 6371 km mean Earth radius
# match ama.plan.great_circle_km.
# ---------------------------------------------------------------------------

locals {
  pi              = 3.14159265358979323846
  earth_radius_km = 6371.0

  # sin(x) = sum over k of (-1)^k x^(2k+1) / (2k+1)!, for k = 0..10.
  sine_terms = [
    for k in range(11) : {
      power       = 2 * k + 1
      coefficient = pow(-1, k) / local.factorials[2 * k + 1]
    }
  ]
  # asin(z) = sum over k of (2k)! / (4^k (k!)^2 (2k+1)) z^(2k+1), for k = 0..19.
  arcsine_terms = [
    for k in range(20) : {
      power       = 2 * k + 1
      coefficient = local.factorials[2 * k] / (pow(4, k) * pow(local.factorials[k], 2) * (2 * k + 1))
    }
  ]
  factorials = [
    1, 1, 2, 6, 24, 120, 720, 5040, 40320, 362880, 3628800, 39916800, 479001600,
    6227020800, 87178291200, 1307674368000, 20922789888000, 355687428096000,
    6402373705728000, 121645100408832000, 2432902008176640000,
    51090942171709440000, 1124000727777607680000, 25852016738884976640000,
    620448401733239439360000, 15511210043330985984000000,
    403291461126605635584000000, 10888869450418352160768000000,
    304888344611713860501504000000, 8841761993739701954543616000000,
    265252859812191058636308480000000, 8222838654177922817725562880000000,
    263130836933693530167218012160000000, 8683317618811886495518194401280000000,
    295232799039604140847618609643520000000,
    10333147966386144929666651337523200000000,
    371993326789901217467999448150835200000000,
    13763753091226345046315979581580902400000000,
    523022617466601111760007224100074291200000000,
    20397882081197443358640281739902897356800000000,
  ]

  # Pairwise values keyed "from|to". Latitudes and longitudes in radians.
  region_pairs = {
    for pair in setproduct(local.region_names, local.region_names) :
    "${pair[0]}|${pair[1]}" => {
      half_dlat = (local.regions_by_name[pair[1]].latitude - local.regions_by_name[pair[0]].latitude) * local.pi / 360
      half_dlon = (local.regions_by_name[pair[1]].longitude - local.regions_by_name[pair[0]].longitude) * local.pi / 360
      lat_from  = local.regions_by_name[pair[0]].latitude * local.pi / 180
      lat_to    = local.regions_by_name[pair[1]].latitude * local.pi / 180
    }
  }

  # cos(x) = sin(x + pi/2); latitudes lie in [-pi/2, pi/2], so the argument
  # stays in [0, pi].
  region_pair_haversines = {
    for key, pair in local.region_pairs : key => min(1, max(0,
      pow(sum([for term in local.sine_terms : term.coefficient * pow(pair.half_dlat, term.power)]), 2)
      + sum([for term in local.sine_terms : term.coefficient * pow(pair.lat_from + local.pi / 2, term.power)])
      * sum([for term in local.sine_terms : term.coefficient * pow(pair.lat_to + local.pi / 2, term.power)])
      * pow(sum([for term in local.sine_terms : term.coefficient * pow(pair.half_dlon, term.power)]), 2)
    ))
  }

  # distance = 2 R asin(sqrt(h)).
  region_pair_sines = { for key, h in local.region_pair_haversines : key => pow(h, 0.5) }
  region_pair_reduced = {
    for key, s in local.region_pair_sines : key => s <= 0.5 ? s : pow((1 - s) / 2, 0.5)
  }
  region_pair_arcsines = {
    for key, z in local.region_pair_reduced : key => (
      local.region_pair_sines[key] <= 0.5
      ? sum([for term in local.arcsine_terms : term.coefficient * pow(z, term.power)])
      : local.pi / 2 - 2 * sum([for term in local.arcsine_terms : term.coefficient * pow(z, term.power)])
    )
  }

  distances_km = {
    for from in local.region_names : from => {
      for to in local.region_names : to => 2 * local.earth_radius_km * local.region_pair_arcsines["${from}|${to}"]
    }
  }

  # Nearest first; equal distances are ordered by name, as in
  # ama.plan.home_order. The fixed-width distance makes string order equal
  # numeric order for distances below 10^8 km.
  home_regions = {
    for from in local.region_names : from => [
      for key in sort([
        for to in local.region_names : format("%016.6f|%s", local.distances_km[from][to], to)
      ]) : split("|", key)[1]
    ]
  }
}

# ---------------------------------------------------------------------------
# Node addresses
#
# With node_domain set, every node gets its own host NAME.node_domain and
# the plan gets bind = 0.0.0.0: ama.plan.View.node_host returns the node's
# host to the nodes that connect to it, and View.bind_host returns bind as
# the address a node listens on. With node_domain null, no node has a host
# and every node uses the plan's host, as on one machine.
# ---------------------------------------------------------------------------

locals {
  node_names = concat(
    flatten([
      for region in var.regions : concat(
        [for server in local.nats_servers[region.name] : server.name],
        [for service in local.region_services[region.name] : service.name],
        [for edge in local.edge_ports[region.name] : edge.name],
      )
    ]),
    [var.core_name],
  )

  # A list of zero or one domain, so that the maps below are empty, not
  # null, without node_domain.
  node_domains = var.node_domain == null ? [] : [var.node_domain]

  # The host field of each node in the plan: {} or { host = NAME.DOMAIN }.
  node_host_fields = {
    for name in local.node_names : name => { for domain in local.node_domains : "host" => "${name}.${domain}" }
  }
  plan_bind_field = { for domain in local.node_domains : "bind" => "0.0.0.0" }

  # The address other nodes connect to, as ama.plan.View.node_host returns it.
  node_addresses = {
    for name, fields in local.node_host_fields : name => lookup(fields, "host", var.host)
  }
}

# ---------------------------------------------------------------------------
# The plan, in the format that ama.plan.validate accepts
# ---------------------------------------------------------------------------

locals {
  # The public URL fields of each region's edges: {} without an entry in
  # var.edge_public_urls, so that the plan then has no such fields.
  edge_public_url_fields = {
    for name in local.region_names : name => (
      contains(keys(var.edge_public_urls), name)
      ? { public_ws_url = var.edge_public_urls[name].ws_url, public_http_url = var.edge_public_urls[name].http_url }
      : {}
    )
  }

  plan = merge(local.plan_bind_field, {
    version     = local.plan_version
    host        = var.host
    core_region = var.core_region
    core = merge(local.node_host_fields[var.core_name], {
      name      = var.core_name
      http_port = local.core_port
    })
    regions = [
      for region in var.regions : {
        name            = region.name
        location        = [region.latitude, region.longitude]
        nats            = [for server in local.nats_servers[region.name] : merge(server, local.node_host_fields[server.name])]
        region_services = [for service in local.region_services[region.name] : merge(service, local.node_host_fields[service.name])]
        edges = [
          for edge in local.edge_ports[region.name] : merge(local.node_host_fields[edge.name], {
            name         = edge.name
            http_port    = edge.http_port
            ws_port      = edge.ws_port
            location     = [region.latitude, region.longitude]
            home_regions = local.home_regions[region.name]
          }, local.edge_public_url_fields[region.name])
        ]
      }
    ]
  })
}

# ---------------------------------------------------------------------------
# Per-node configuration, for the cloud modules
# ---------------------------------------------------------------------------

locals {
  nats_client_urls = {
    for name in local.region_names : name => [
      for server in local.nats_servers[name] : "nats://${local.node_addresses[server.name]}:${server.client_port}"
    ]
  }

  # Each server routes to every server of its cluster, itself included:
  # nats-server ignores a route to itself, and a one-server region still
  # needs a route for JetStream in a supercluster (see ama/natsconf.py).
  nats_routes = {
    for name in local.region_names : name => [
      for server in local.nats_servers[name] : "nats-route://${local.node_addresses[server.name]}:${server.cluster_port}"
    ]
  }

  nats_gateways = {
    for name in local.region_names : name => [
      for other in local.region_names : {
        name = other
        urls = [for server in local.nats_servers[other] : "nats://${local.node_addresses[server.name]}:${server.gateway_port}"]
      } if other != name
    ]
  }

  # Services connect to their own region first, then to the others nearest
  # first; the core connects to its region first.
  service_nats_urls = {
    for name in local.region_names : name => flatten([for home in local.home_regions[name] : local.nats_client_urls[home]])
  }

  nats_nodes = merge([
    for region in var.regions : {
      for server in local.nats_servers[region.name] : server.name => {
        region        = region.name
        kind          = "nats"
        host          = local.node_addresses[server.name]
        instance_type = region.nats_instance_type
        ports = {
          client  = server.client_port
          cluster = server.cluster_port
          gateway = server.gateway_port
          monitor = server.monitor_port
        }
        routes       = local.nats_routes[region.name]
        gateways     = local.nats_gateways[region.name]
        nats_urls    = local.nats_client_urls[region.name]
        home_regions = [region.name]
      }
    }
  ]...)

  region_service_nodes = merge([
    for region in var.regions : {
      for service in local.region_services[region.name] : service.name => {
        region        = region.name
        kind          = "region"
        host          = local.node_addresses[service.name]
        instance_type = region.region_service_instance_type
        ports         = { http = service.http_port }
        routes        = []
        gateways      = []
        nats_urls     = local.service_nats_urls[region.name]
        home_regions  = [region.name]
      }
    }
  ]...)

  edge_nodes = merge([
    for region in var.regions : {
      for edge in local.edge_ports[region.name] : edge.name => {
        region        = region.name
        kind          = "edge"
        host          = local.node_addresses[edge.name]
        instance_type = region.edge_instance_type
        ports         = { http = edge.http_port, ws = edge.ws_port }
        routes        = []
        gateways      = []
        nats_urls     = local.service_nats_urls[region.name]
        home_regions  = local.home_regions[region.name]
      }
    }
  ]...)

  core_node = {
    (var.core_name) = {
      region        = var.core_region
      kind          = "core"
      host          = local.node_addresses[var.core_name]
      instance_type = var.core_instance_type
      ports         = { http = local.core_port }
      routes        = []
      gateways      = []
      nats_urls     = try(local.service_nats_urls[var.core_region], [])
      home_regions  = try(local.home_regions[var.core_region], [var.core_region])
    }
  }

  nodes = merge(local.nats_nodes, local.region_service_nodes, local.edge_nodes, local.core_node)
}

# ---------------------------------------------------------------------------
# JetStream placement
#
# Each region's NATS cluster is one JetStream cluster named after the region.
# The meta group spans every server of every region; it needs a majority of
# all servers, so losing a region is survivable only while the servers of
# the remaining regions are more than half of the total.
# ---------------------------------------------------------------------------

locals {
  total_nats_servers = sum(concat([0], [for region in var.regions : region.nats_servers]))
  meta_quorum        = floor(local.total_nats_servers / 2) + 1

  jetstream_placement = {
    meta_group = {
      servers = local.total_nats_servers
      quorum  = local.meta_quorum
      # Names of regions whose loss leaves the meta group without a quorum.
      regions_not_survivable = [
        for region in var.regions : region.name
        if local.total_nats_servers - region.nats_servers < local.meta_quorum
      ]
    }
    streams = {
      for region in var.regions : region.name => {
        # Stream and subject names follow ama.subjects.stream and
        # ama.subjects.updates_of_region.
        stream   = "AMA_UPD_${upper(replace(region.name, "-", "_"))}"
        subjects = ["ama.upd.${region.name}.*"]
        cluster  = region.name
        # JetStream replicates a stream to at most 5 servers of its cluster.
        max_replicas = min(5, region.nats_servers)
        servers      = [for server in local.nats_servers[region.name] : server.name]
      }
    }
  }
}
