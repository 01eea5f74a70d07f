output "lb_dns_name" {
  description = "DNS name of the core's load balancer, for the core's public record in the global DNS module."
  value       = aws_lb.core.dns_name
}

output "lb_zone_id" {
  description = "Route 53 hosted zone ID of the core's load balancer, for alias records."
  value       = aws_lb.core.zone_id
}

output "instance_id" {
  description = "EC2 instance ID of the core."
  value       = aws_instance.core.id
}

output "database_address" {
  description = "Host name of the core's PostgreSQL database."
  value       = aws_db_instance.core.address
}

output "database_secret_arn" {
  description = "ARN of the Secrets Manager secret with the database's master user password."
  value       = aws_db_instance.core.master_user_secret[0].secret_arn
}

output "config_parameter_name" {
  description = "SSM parameter that holds the core's configuration."
  value       = aws_ssm_parameter.core.name
}
