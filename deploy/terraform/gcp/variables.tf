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

variable "project" {
  description = "GCP project."
  type        = string
}

variable "region" {
  description = "Region of the subnetworks and the static addresses."
  type        = string
}

variable "zones" {
  description = "Zones for the vrouters; the HA pair is spread over them."
  type        = list(string)
}

variable "public_network" {
  description = "VPC network of the public interface (the firewall rules go there)."
  type        = string
}

variable "public_subnetwork" {
  description = "Subnetwork of the public interface (IKE, ESP, WireGuard)."
  type        = string
}

variable "private_network" {
  description = "VPC network of the private interface (a different VPC: GCP needs one per NIC)."
  type        = string
}

variable "private_subnetwork" {
  description = "Subnetwork of the private interface (the tenant side)."
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

variable "machine_type" {
  description = "Machine type (2+ vCPUs: the data plane runs a worker per core)."
  type        = string
  default     = "c3-standard-4"
}

variable "image" {
  description = "Boot image."
  type        = string
  default     = "debian-cloud/debian-12"
}
