output "plan" {
  description = "The topology plan as JSON, ready for `ama up --plan FILE`."
  value       = module.topology.plan
}

output "ports" {
  description = "Every TCP port the plan uses, to check that they are free before `ama up`."
  value       = module.topology.ports
}
