# The provider-free example renders a plan that ama up accepts.

run "local_example" {
  command = plan

  module {
    source = "./../../examples/local"
  }

  assert {
    condition     = [for region in jsondecode(output.plan).regions : region.name] == ["us-east", "eu-central", "ap-southeast"]
    error_message = "The local example must plan the three default regions."
  }

  assert {
    condition     = jsondecode(output.plan).core == { name = "core-1", http_port = 20000 }
    error_message = "The local example must run the core on its base_port."
  }

  assert {
    condition = alltrue([
      for region in jsondecode(output.plan).regions :
      length(region.nats) == 1 && length(region.region_services) == 1 && length(region.edges) == 1
    ])
    error_message = "The local example must run one NATS server, one region service and one edge per region."
  }

  assert {
    condition     = length(distinct(output.ports)) == 22
    error_message = "The local example must use 22 distinct ports."
  }
}
