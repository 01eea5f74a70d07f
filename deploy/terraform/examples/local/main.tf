# A three-region plan for one machine: start it with
#   terraform apply && terraform output -raw plan > plan.json
#   ama up --plan plan.json --data-dir data

module "topology" {
  source = "../../modules/topology"

  regions = [
    for region in var.regions : {
      name            = region.name
      latitude        = region.latitude
      longitude       = region.longitude
      nats_servers    = 1
      region_services = 1
      edges           = var.edges_per_region
    }
  ]
  core_region = var.core_region
  host        = "127.0.0.1"
  base_port   = var.base_port
}
