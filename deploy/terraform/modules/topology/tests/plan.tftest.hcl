# Outputs of the topology module for typical inputs. Every run is plan-only
# and uses no provider, so the file runs offline.

variables {
  regions = [
    { name = "us-east", latitude = 39.04, longitude = -77.49, nats_servers = 1, region_services = 1, edges = 1 },
    { name = "eu-central", latitude = 50.11, longitude = 8.68, nats_servers = 1, region_services = 1, edges = 1 },
    { name = "ap-southeast", latitude = 1.35, longitude = 103.82, nats_servers = 1, region_services = 1, edges = 1 },
  ]
  core_region = "us-east"
  base_port   = 20000
}

run "plan_json_fields" {
  command = plan

  assert {
    condition     = jsondecode(output.plan).version == 1
    error_message = "plan.version must be 1."
  }

  assert {
    condition     = jsondecode(output.plan).host == "127.0.0.1"
    error_message = "plan.host must default to 127.0.0.1."
  }

  assert {
    condition     = jsondecode(output.plan).core_region == "us-east"
    error_message = "plan.core_region must be the core_region input."
  }

  assert {
    condition     = jsondecode(output.plan).core == { name = "core-1", http_port = 20000 }
    error_message = "plan.core must be core-1 on base_port."
  }

  assert {
    condition     = [for region in jsondecode(output.plan).regions : region.name] == ["us-east", "eu-central", "ap-southeast"]
    error_message = "plan.regions must keep the input order."
  }

  assert {
    condition     = jsondecode(output.plan).regions[1].location == [50.11, 8.68]
    error_message = "plan.regions[].location must be [latitude, longitude]."
  }

  assert {
    condition     = output.plan == jsonencode(output.plan_object)
    error_message = "plan and plan_object must describe the same plan."
  }
}

run "ports_by_region_block" {
  command = plan

  assert {
    condition = jsondecode(output.plan).regions[0].nats[0] == {
      name         = "us-east-nats-1"
      client_port  = 20100
      cluster_port = 20101
      gateway_port = 20102
      monitor_port = 20103
    }
    error_message = "The first region's NATS server must take the first four ports of the block after the core's."
  }

  assert {
    condition     = jsondecode(output.plan).regions[0].region_services == [{ name = "us-east-region-1", http_port = 20104 }]
    error_message = "Region services must follow the NATS servers in the region's block."
  }

  assert {
    condition     = jsondecode(output.plan).regions[2].edges[0].http_port == 20305 && jsondecode(output.plan).regions[2].edges[0].ws_port == 20306
    error_message = "The third region's edge must use ports 20305 (HTTP) and 20306 (WebSocket)."
  }

  assert {
    condition     = length(output.ports) == 22
    error_message = "Three regions of one NATS server, one region service and one edge plus the core use 22 ports."
  }

  assert {
    condition     = length(distinct(output.ports)) == length(output.ports)
    error_message = "Every port of the plan must be distinct."
  }

  assert {
    condition     = !contains(output.ports, 4222)
    error_message = "The plan must not use 4222, the NATS default client port."
  }
}

run "home_regions_nearest_first" {
  command = plan

  assert {
    condition     = jsondecode(output.plan).regions[0].edges[0].home_regions == ["us-east", "eu-central", "ap-southeast"]
    error_message = "An edge in us-east must prefer us-east, then eu-central (6549 km), then ap-southeast (15522 km)."
  }

  assert {
    condition     = jsondecode(output.plan).regions[1].edges[0].home_regions == ["eu-central", "us-east", "ap-southeast"]
    error_message = "An edge in eu-central must prefer eu-central, then us-east, then ap-southeast."
  }

  assert {
    condition     = jsondecode(output.plan).regions[2].edges[0].home_regions == ["ap-southeast", "eu-central", "us-east"]
    error_message = "An edge in ap-southeast must prefer ap-southeast, then eu-central, then us-east."
  }

  assert {
    # Haversine on a 6371 km sphere, as ama.plan.great_circle_km computes it.
    condition     = abs(output.distances_km["us-east"]["eu-central"] - 6549.246) < 0.001
    error_message = "The great-circle distance from Ashburn to Frankfurt must be 6549.246 km, the value of ama.plan.great_circle_km."
  }

  assert {
    condition     = output.distances_km["eu-central"]["eu-central"] == 0
    error_message = "A region's distance to itself must be 0."
  }
}

run "nodes_routes_and_gateways" {
  command = plan

  assert {
    condition     = length(output.nodes) == 10
    error_message = "Three regions of three nodes each plus the core make 10 nodes."
  }

  assert {
    condition     = output.nodes["eu-central-nats-1"].routes == ["nats-route://127.0.0.1:20201"]
    error_message = "A one-server region must route to its own cluster port, which JetStream in a supercluster needs."
  }

  assert {
    condition = output.nodes["eu-central-nats-1"].gateways == [
      { name = "us-east", urls = ["nats://127.0.0.1:20102"] },
      { name = "ap-southeast", urls = ["nats://127.0.0.1:20302"] },
    ]
    error_message = "A NATS server must list a gateway to every other region and none to its own."
  }

  assert {
    condition     = output.nodes["ap-southeast-edge-1"].nats_urls == ["nats://127.0.0.1:20300", "nats://127.0.0.1:20200", "nats://127.0.0.1:20100"]
    error_message = "An edge must list NATS client URLs in its home-region order."
  }

  assert {
    condition     = output.nodes["core-1"].kind == "core" && output.nodes["core-1"].region == "us-east"
    error_message = "The core node must run in core_region."
  }
}

run "jetstream_meta_quorum" {
  command = plan

  assert {
    condition     = output.jetstream_placement.meta_group.servers == 3 && output.jetstream_placement.meta_group.quorum == 2
    error_message = "Three one-server regions make a meta group of 3 with a quorum of 2."
  }

  assert {
    condition     = output.jetstream_placement.meta_group.regions_not_survivable == []
    error_message = "Losing any one of three equal regions must leave the meta group its quorum."
  }

  assert {
    condition = output.jetstream_placement.streams["eu-central"] == {
      stream       = "AMA_UPD_EU_CENTRAL"
      subjects     = ["ama.upd.eu-central.*"]
      cluster      = "eu-central"
      max_replicas = 1
      servers      = ["eu-central-nats-1"]
    }
    error_message = "The eu-central stream must be placed in its own cluster with the names ama.subjects uses."
  }
}

run "three_server_clusters" {
  command = plan

  variables {
    regions = [
      { name = "us-east", latitude = 39.04, longitude = -77.49, nats_servers = 3, region_services = 2, edges = 2 },
      { name = "eu-central", latitude = 50.11, longitude = 8.68, nats_servers = 3, region_services = 2, edges = 2 },
      { name = "ap-southeast", latitude = 1.35, longitude = 103.82, nats_servers = 3, region_services = 2, edges = 2 },
    ]
    host = "10.0.0.5"
  }

  assert {
    condition     = [for server in jsondecode(output.plan).regions[0].nats : server.client_port] == [20100, 20104, 20108]
    error_message = "NATS servers must take four ports each, in order."
  }

  assert {
    condition     = [for service in jsondecode(output.plan).regions[0].region_services : service.http_port] == [20112, 20113]
    error_message = "Region services must start after the last NATS server's ports."
  }

  assert {
    condition     = [for edge in jsondecode(output.plan).regions[0].edges : [edge.http_port, edge.ws_port]] == [[20114, 20115], [20116, 20117]]
    error_message = "Edges must take two ports each after the region services."
  }

  assert {
    condition     = output.nodes["us-east-nats-2"].routes == ["nats-route://10.0.0.5:20101", "nats-route://10.0.0.5:20105", "nats-route://10.0.0.5:20109"]
    error_message = "Every NATS server must route to every server of its region."
  }

  assert {
    condition     = length(distinct(output.ports)) == 1 + 3 * (12 + 2 + 4)
    error_message = "Every port of the plan must be distinct."
  }

  assert {
    condition     = output.jetstream_placement.meta_group.servers == 9 && output.jetstream_placement.meta_group.quorum == 5
    error_message = "Nine servers make a meta group with a quorum of 5."
  }

  assert {
    condition     = output.jetstream_placement.streams["us-east"].max_replicas == 3
    error_message = "A three-server region can hold three replicas of its stream."
  }
}

run "uneven_regions_report_fragile_meta_group" {
  command = plan

  variables {
    regions = [
      { name = "big", latitude = 0, longitude = 0, nats_servers = 5 },
      { name = "small-a", latitude = 10, longitude = 10, nats_servers = 1 },
      { name = "small-b", latitude = 20, longitude = 20, nats_servers = 1 },
    ]
    core_region = "big"
  }

  assert {
    condition     = output.jetstream_placement.meta_group.regions_not_survivable == ["big"]
    error_message = "Losing a region that holds 5 of 7 servers must be reported as breaking the meta quorum."
  }
}

run "pinned_port_slots" {
  command = plan

  variables {
    # eu-central was removed from the middle; the pinned slots keep the
    # other regions' ports where they were.
    regions = [
      { name = "us-east", latitude = 39.04, longitude = -77.49, port_slot = 0 },
      { name = "ap-southeast", latitude = 1.35, longitude = 103.82, port_slot = 2 },
      { name = "sa-east", latitude = -23.55, longitude = -46.63, port_slot = 3 },
    ]
  }

  assert {
    condition     = output.nodes["ap-southeast-nats-1"].ports.client == 20300
    error_message = "A region pinned to port slot 2 must keep the block that starts at 20300."
  }

  assert {
    condition     = output.nodes["sa-east-nats-1"].ports.client == 20400
    error_message = "A region pinned to port slot 3 must use the block that starts at 20400."
  }

  assert {
    condition     = output.home_regions["sa-east"] == ["sa-east", "us-east", "ap-southeast"]
    error_message = "Sao Paulo must be nearer to Ashburn than to Singapore."
  }
}

run "antipodes_half_circumference" {
  command = plan

  variables {
    regions = [
      { name = "north", latitude = 90, longitude = 0 },
      { name = "south", latitude = -90, longitude = 0 },
      { name = "equator", latitude = 0, longitude = 180 },
    ]
    core_region = "north"
  }

  assert {
    condition     = abs(output.distances_km["north"]["south"] - 20015.087) < 0.01
    error_message = "Pole to pole must be half the circumference of a 6371 km sphere (20015.087 km)."
  }

  assert {
    condition     = abs(output.distances_km["north"]["equator"] - 10007.543) < 0.01
    error_message = "Pole to equator must be a quarter of the circumference (10007.543 km)."
  }

  assert {
    condition     = output.home_regions["north"] == ["north", "equator", "south"]
    error_message = "Home regions must be ordered by distance."
  }
}

run "node_domain_unset_adds_no_host" {
  command = plan

  assert {
    condition     = !contains(keys(jsondecode(output.plan)), "bind")
    error_message = "Without node_domain the plan must have no bind field."
  }

  assert {
    condition = alltrue(flatten([
      for region in jsondecode(output.plan).regions : [
        for node in concat(region.nats, region.region_services, region.edges) : !contains(keys(node), "host")
      ]
    ]))
    error_message = "Without node_domain no node may have a host field, so that every node uses the plan's host."
  }

  assert {
    condition     = !contains(keys(jsondecode(output.plan).core), "host")
    error_message = "Without node_domain the core must have no host field."
  }
}

run "node_domain_hosts" {
  command = plan

  variables {
    node_domain = "ama.internal"
  }

  assert {
    condition     = jsondecode(output.plan).bind == "0.0.0.0"
    error_message = "With node_domain every node must listen on 0.0.0.0 (plan.bind)."
  }

  assert {
    condition     = jsondecode(output.plan).host == "127.0.0.1"
    error_message = "node_domain must leave the plan's host field as the host input."
  }

  assert {
    condition     = jsondecode(output.plan).regions[1].nats[0].host == "eu-central-nats-1.ama.internal"
    error_message = "A NATS server's host must be NAME.node_domain."
  }

  assert {
    condition     = jsondecode(output.plan).regions[1].region_services[0].host == "eu-central-region-1.ama.internal"
    error_message = "A region service's host must be NAME.node_domain."
  }

  assert {
    condition     = jsondecode(output.plan).regions[2].edges[0].host == "ap-southeast-edge-1.ama.internal"
    error_message = "An edge's host must be NAME.node_domain."
  }

  assert {
    condition     = jsondecode(output.plan).core == { name = "core-1", http_port = 20000, host = "core-1.ama.internal" }
    error_message = "The core's host must be NAME.node_domain."
  }

  assert {
    condition     = output.nodes["eu-central-nats-1"].routes == ["nats-route://eu-central-nats-1.ama.internal:20201"]
    error_message = "NATS routes must name each server by its host."
  }

  assert {
    condition = output.nodes["eu-central-nats-1"].gateways == [
      { name = "us-east", urls = ["nats://us-east-nats-1.ama.internal:20102"] },
      { name = "ap-southeast", urls = ["nats://ap-southeast-nats-1.ama.internal:20302"] },
    ]
    error_message = "NATS gateways must name each server of the other regions by its host."
  }

  assert {
    condition = output.nodes["ap-southeast-edge-1"].nats_urls == [
      "nats://ap-southeast-nats-1.ama.internal:20300",
      "nats://eu-central-nats-1.ama.internal:20200",
      "nats://us-east-nats-1.ama.internal:20100",
    ]
    error_message = "An edge's NATS client URLs must name the servers by their hosts, in home-region order."
  }

  assert {
    condition     = output.nodes["core-1"].host == "core-1.ama.internal" && output.nodes["us-east-region-1"].host == "us-east-region-1.ama.internal"
    error_message = "Every entry of nodes must carry the node's own host."
  }
}
