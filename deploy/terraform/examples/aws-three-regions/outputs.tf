output "plan" {
  description = "The topology plan as JSON that every node received."
  value       = module.topology.plan
}

output "edge_url" {
  description = "Address that users open; Route 53 sends each to the nearest healthy region."
  value       = "https://${module.dns.edge_fqdn}"
}

output "core_url" {
  description = "Address of the core's API."
  value       = "https://${module.dns.core_fqdn}"
}

output "region_load_balancers" {
  description = "DNS name of each region's edge load balancer, keyed by region name, for testing a region directly."
  value       = { for name, region in local.region_modules : name => region.lb_dns_name }
}

output "jetstream_placement" {
  description = "JetStream meta group size and quorum, and each region's stream placement."
  value       = module.topology.jetstream_placement
}
