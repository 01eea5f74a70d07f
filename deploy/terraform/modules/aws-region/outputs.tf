output "lb_dns_name" {
  description = "DNS name of the edges' load balancer, for alias records in the global DNS module."
  value       = aws_lb.edge.dns_name
}

output "lb_zone_id" {
  description = "Route 53 hosted zone ID of the edges' load balancer, for alias records."
  value       = aws_lb.edge.zone_id
}

output "lb_arn" {
  description = "ARN of the edges' load balancer."
  value       = aws_lb.edge.arn
}

output "nats_urls" {
  description = "NATS client URLs of this region's servers by DNS name, in plan order."
  value       = [for name, server in local.nats_servers : "nats://${name}.${var.internal_domain}:${server.client_port}"]
}

output "nats_private_ips" {
  description = "Private IP address of each NATS server, keyed by node name."
  value       = { for name, instance in aws_instance.nats : name => instance.private_ip }
}

output "region_service_instance_ids" {
  description = "EC2 instance ID of each region service, keyed by node name."
  value       = { for name, instance in aws_instance.region_service : name => instance.id }
}

output "edge_autoscaling_group_name" {
  description = "Name of the edges' Auto Scaling group."
  value       = aws_autoscaling_group.edge.name
}

output "config_parameter_names" {
  description = "SSM parameter that holds each node's configuration, keyed by node name (the edge group is REGION-edges)."
  value       = { for name, parameter in aws_ssm_parameter.node : name => parameter.name }
}

output "security_group_ids" {
  description = "Security group IDs of the NATS servers, region services, edges and the load balancer."
  value       = local.egress_groups
}

output "vpc_cidr_block" {
  description = "CIDR block of this region's VPC, for the other regions' peer_cidr_blocks."
  value       = data.aws_vpc.this.cidr_block
}
