output "plan" {
  description = "The topology plan as JSON, in the format that `ama up --plan FILE` starts (ama.plan.validate accepts it)."
  value       = jsonencode(local.plan)
}

output "plan_object" {
  description = "The topology plan as a Terraform object, for modules that pass each node its part."
  value       = local.plan
}

output "nodes" {
  description = <<-EOT
    Configuration of every node, keyed by node name: region, kind (nats,
    region, edge or core), host (the address other nodes connect to),
    instance_type, ports, the NATS routes and gateways
    of a NATS server (empty for other kinds), the NATS client URLs a service
    connects to in order, and the home regions nearest first.
  EOT
  value       = local.nodes
}

output "jetstream_placement" {
  description = <<-EOT
    JetStream layout: the meta group's size and quorum with the regions whose
    loss would break it, and per region the update stream, its subjects, the
    cluster it is placed in and the servers that can hold its replicas.
  EOT
  value       = local.jetstream_placement
}

output "home_regions" {
  description = "Region names ordered by great-circle distance from each region, nearest first, keyed by region name."
  value       = local.home_regions
}

output "distances_km" {
  description = "Great-circle (haversine) distance in km between every pair of regions, as distances_km[from][to]."
  value       = local.distances_km
}

output "ports" {
  description = "Every TCP port the plan uses, core first, in plan order."
  value       = local.all_ports
}
