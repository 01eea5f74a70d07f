output "edge_fqdn" {
  description = "Name that users open; it resolves to the nearest healthy region's edges."
  value       = var.edge_record_name
}

output "core_fqdn" {
  description = "Name of the core's API."
  value       = var.core_record_name
}

output "internal_zone_id" {
  description = "ID of the private hosted zone of node names, for the aws-region modules."
  value       = aws_route53_zone.internal.zone_id
}

output "internal_domain" {
  description = "Domain of the private hosted zone of node names."
  value       = aws_route53_zone.internal.name
}

output "edge_record_regions" {
  description = "AWS region of each region's record under edge_record_name, keyed by region name."
  value       = { for name, record in aws_route53_record.edge : name => var.regions[name].aws_region }
}
