variable "name" {
  description = "Name prefix of every resource."
  type        = string
  default     = "cvlan-vrouter"
}

variable "controller_url" {
  description = "The controller the vrouter registers with, https://host[:port][/prefix]."
  type        = string
}

variable "registration_tokens" {
  description = "One-time registration tokens from the controller, one per vrouter (two with ha = true)."
  type        = list(string)
  sensitive   = true
}

variable "release_url" {
  description = "https URL of the cvlan-vrouter release tarball (deploy/package.sh)."
  type        = string
}

variable "ha" {
  description = "Deploy an HA pair (two vrouters, spread over the given zones) instead of one."
  type        = bool
  default     = false
}

variable "resource_group_name" {
  description = "Resource group for every resource."
  type        = string
}

variable "location" {
  description = "Azure region."
  type        = string
}

variable "zones" {
  description = "Availability zones for the vrouters; the HA pair is spread over them."
  type        = list(string)
  default     = ["1", "2"]
}

variable "public_subnet_id" {
  description = "Subnet of the public interface (IKE, ESP, WireGuard)."
  type        = string
}

variable "private_subnet_id" {
  description = "Subnet of the private interface (the tenant side)."
  type        = string
}

variable "private_cidrs" {
  description = "Networks on the private side that may send anything to the vrouter."
  type        = list(string)
}

variable "peer_cidrs" {
  description = "Sources allowed to reach IKE (UDP 500/4500), ESP and WireGuard (UDP 51820)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "admin_cidrs" {
  description = "Sources allowed to reach SSH on the public interface; empty closes SSH."
  type        = list(string)
  default     = []
}

variable "vm_size" {
  description = "VM size (2+ vCPUs: the data plane runs a worker per core)."
  type        = string
  default     = "Standard_D2s_v5"
}

variable "admin_username" {
  description = "Login user for SSH."
  type        = string
  default     = "cvlan"
}

variable "ssh_public_key" {
  description = "OpenSSH public key of admin_username."
  type        = string
}
