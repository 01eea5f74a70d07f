# One rejected input per validation rule. Each run starts from the valid
# three-region input below and changes one field.

variables {
  regions = [
    { name = "us-east", latitude = 39.04, longitude = -77.49 },
    { name = "eu-central", latitude = 50.11, longitude = 8.68 },
    { name = "ap-southeast", latitude = 1.35, longitude = 103.82 },
  ]
  core_region = "us-east"
}

run "reject_two_regions" {
  command = plan

  variables {
    regions = [
      { name = "us-east", latitude = 39.04, longitude = -77.49 },
      { name = "eu-central", latitude = 50.11, longitude = 8.68 },
    ]
  }

  expect_failures = [var.regions]
}

run "reject_duplicate_region_names" {
  command = plan

  variables {
    regions = [
      { name = "us-east", latitude = 39.04, longitude = -77.49 },
      { name = "us-east", latitude = 50.11, longitude = 8.68 },
      { name = "ap-southeast", latitude = 1.35, longitude = 103.82 },
    ]
  }

  expect_failures = [var.regions]
}

run "reject_region_name_with_dot" {
  command = plan

  variables {
    regions = [
      { name = "us.east", latitude = 39.04, longitude = -77.49 },
      { name = "eu-central", latitude = 50.11, longitude = 8.68 },
      { name = "ap-southeast", latitude = 1.35, longitude = 103.82 },
    ]
    core_region = "eu-central"
  }

  expect_failures = [var.regions]
}

run "reject_region_name_too_long" {
  command = plan

  variables {
    regions = [
      { name = "r${join("", [for i in range(64) : "x"])}", latitude = 39.04, longitude = -77.49 },
      { name = "eu-central", latitude = 50.11, longitude = 8.68 },
      { name = "ap-southeast", latitude = 1.35, longitude = 103.82 },
    ]
    core_region = "eu-central"
  }

  expect_failures = [var.regions]
}

run "reject_empty_region_name" {
  command = plan

  variables {
    regions = [
      { name = "", latitude = 39.04, longitude = -77.49 },
      { name = "eu-central", latitude = 50.11, longitude = 8.68 },
      { name = "ap-southeast", latitude = 1.35, longitude = 103.82 },
    ]
    core_region = "eu-central"
  }

  expect_failures = [var.regions]
}

run "reject_latitude_above_90" {
  command = plan

  variables {
    regions = [
      { name = "us-east", latitude = 90.5, longitude = -77.49 },
      { name = "eu-central", latitude = 50.11, longitude = 8.68 },
      { name = "ap-southeast", latitude = 1.35, longitude = 103.82 },
    ]
  }

  expect_failures = [var.regions]
}

run "reject_latitude_below_minus_90" {
  command = plan

  variables {
    regions = [
      { name = "us-east", latitude = -91, longitude = -77.49 },
      { name = "eu-central", latitude = 50.11, longitude = 8.68 },
      { name = "ap-southeast", latitude = 1.35, longitude = 103.82 },
    ]
  }

  expect_failures = [var.regions]
}

run "reject_longitude_out_of_range" {
  command = plan

  variables {
    regions = [
      { name = "us-east", latitude = 39.04, longitude = -180.01 },
      { name = "eu-central", latitude = 50.11, longitude = 8.68 },
      { name = "ap-southeast", latitude = 1.35, longitude = 181 },
    ]
  }

  expect_failures = [var.regions]
}

run "reject_even_nats_cluster" {
  command = plan

  variables {
    regions = [
      { name = "us-east", latitude = 39.04, longitude = -77.49, nats_servers = 2 },
      { name = "eu-central", latitude = 50.11, longitude = 8.68 },
      { name = "ap-southeast", latitude = 1.35, longitude = 103.82 },
    ]
  }

  expect_failures = [var.regions]
}

run "reject_zero_nats_servers" {
  command = plan

  variables {
    regions = [
      { name = "us-east", latitude = 39.04, longitude = -77.49, nats_servers = 0 },
      { name = "eu-central", latitude = 50.11, longitude = 8.68 },
      { name = "ap-southeast", latitude = 1.35, longitude = 103.82 },
    ]
  }

  expect_failures = [var.regions]
}

run "reject_zero_region_services" {
  command = plan

  variables {
    regions = [
      { name = "us-east", latitude = 39.04, longitude = -77.49, region_services = 0 },
      { name = "eu-central", latitude = 50.11, longitude = 8.68 },
      { name = "ap-southeast", latitude = 1.35, longitude = 103.82 },
    ]
  }

  expect_failures = [var.regions]
}

run "reject_zero_edges" {
  command = plan

  variables {
    regions = [
      { name = "us-east", latitude = 39.04, longitude = -77.49 },
      { name = "eu-central", latitude = 50.11, longitude = 8.68, edges = 0 },
      { name = "ap-southeast", latitude = 1.35, longitude = 103.82 },
    ]
  }

  expect_failures = [var.regions]
}

run "reject_shared_port_slot" {
  command = plan

  variables {
    regions = [
      { name = "us-east", latitude = 39.04, longitude = -77.49, port_slot = 1 },
      { name = "eu-central", latitude = 50.11, longitude = 8.68 },
      { name = "ap-southeast", latitude = 1.35, longitude = 103.82 },
    ]
  }

  expect_failures = [var.regions]
}

run "reject_negative_port_slot" {
  command = plan

  variables {
    regions = [
      { name = "us-east", latitude = 39.04, longitude = -77.49, port_slot = -1 },
      { name = "eu-central", latitude = 50.11, longitude = 8.68 },
      { name = "ap-southeast", latitude = 1.35, longitude = 103.82 },
    ]
  }

  expect_failures = [var.regions]
}

run "reject_region_larger_than_port_block" {
  command = plan

  variables {
    regions = [
      { name = "us-east", latitude = 39.04, longitude = -77.49, nats_servers = 5, edges = 40 },
      { name = "eu-central", latitude = 50.11, longitude = 8.68 },
      { name = "ap-southeast", latitude = 1.35, longitude = 103.82 },
    ]
  }

  expect_failures = [var.regions]
}

run "reject_unknown_core_region" {
  command = plan

  variables {
    core_region = "us-west"
  }

  expect_failures = [var.core_region]
}

run "reject_invalid_core_name" {
  command = plan

  variables {
    core_name = "core 1"
  }

  expect_failures = [var.core_name]
}

run "reject_empty_host" {
  command = plan

  variables {
    host = " "
  }

  expect_failures = [var.host]
}

run "reject_privileged_base_port" {
  command = plan

  variables {
    base_port = 80
  }

  expect_failures = [var.base_port]
}

run "reject_base_port_range_over_65535" {
  command = plan

  variables {
    base_port = 65400
  }

  expect_failures = [var.base_port]
}

run "reject_range_including_4222" {
  command = plan

  variables {
    # 4100 + 100 * 4 - 1 = 4499, so the range covers 4222.
    base_port = 4100
  }

  expect_failures = [var.base_port]
}

run "reject_tiny_ports_per_region" {
  command = plan

  variables {
    ports_per_region = 6
  }

  expect_failures = [var.ports_per_region]
}

run "reject_node_domain_with_leading_dot" {
  command = plan

  variables {
    node_domain = ".ama.internal"
  }

  expect_failures = [var.node_domain]
}

run "reject_node_domain_with_underscore" {
  command = plan

  variables {
    node_domain = "ama_nodes.internal"
  }

  expect_failures = [var.node_domain]
}

run "reject_node_name_longer_than_dns_label" {
  command = plan

  variables {
    # 60 + "-region-1" = 69 characters, over the 63 of a DNS label.
    regions = [
      { name = "r${join("", [for i in range(59) : "x"])}", latitude = 39.04, longitude = -77.49 },
      { name = "eu-central", latitude = 50.11, longitude = 8.68 },
      { name = "ap-southeast", latitude = 1.35, longitude = 103.82 },
    ]
    core_region = "eu-central"
    node_domain = "ama.internal"
  }

  expect_failures = [var.node_domain]
}
