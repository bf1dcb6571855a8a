output "public_ips" {
  description = "Static public IPs the peers connect to."
  value       = azurerm_public_ip.public[*].ip_address
}

output "listen_addresses" {
  description = "Private addresses of the public interfaces (listen_address in vrouter.toml)."
  value       = azurerm_network_interface.public[*].private_ip_address
}

output "private_addresses" {
  description = "Addresses of the private interfaces (next hop for the tenant networks' routes)."
  value       = azurerm_network_interface.private[*].private_ip_address
}

output "vm_ids" {
  description = "VM IDs."
  value       = azurerm_linux_virtual_machine.vrouter[*].id
}
