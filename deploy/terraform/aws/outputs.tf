output "public_ips" {
  description = "Public IPs (Elastic IPs) the peers connect to."
  value       = aws_eip.public[*].public_ip
}

output "listen_addresses" {
  description = "Private addresses of the public interfaces (listen_address in vrouter.toml)."
  value       = aws_network_interface.public[*].private_ip
}

output "private_addresses" {
  description = "Addresses of the private interfaces (next hop for the tenant networks' routes)."
  value       = aws_network_interface.private[*].private_ip
}

output "instance_ids" {
  description = "EC2 instance IDs."
  value       = aws_instance.vrouter[*].id
}
