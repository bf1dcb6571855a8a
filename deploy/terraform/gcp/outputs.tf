output "public_ips" {
  description = "Static external IPs the peers connect to."
  value       = google_compute_address.public[*].address
}

output "listen_addresses" {
  description = "Internal addresses of the public interfaces (listen_address in vrouter.toml)."
  value       = google_compute_instance.vrouter[*].network_interface[0].network_ip
}

output "private_addresses" {
  description = "Addresses of the private interfaces (next hop for the tenant networks' routes)."
  value       = google_compute_instance.vrouter[*].network_interface[1].network_ip
}

output "instance_ids" {
  description = "Instance IDs."
  value       = google_compute_instance.vrouter[*].instance_id
}
