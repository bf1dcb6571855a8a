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
  description = "Deploy an HA pair (two vrouters, spread over the given subnets) instead of one."
  type        = bool
  default     = false
}

variable "vpc_id" {
  description = "VPC of both subnets."
  type        = string
}

variable "public_subnet_ids" {
  description = "Subnets for the public interface (IKE, ESP, WireGuard); the HA pair is spread over them."
  type        = list(string)
}

variable "private_subnet_ids" {
  description = "Subnets for the private interface (the tenant side), same order and zones as public_subnet_ids."
  type        = list(string)
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

variable "instance_type" {
  description = "EC2 instance type (2+ vCPUs: the data plane runs a worker per core)."
  type        = string
  default     = "c6i.large"
}

variable "ami_id" {
  description = "AMI to boot; null picks the newest official Debian 12 amd64 image."
  type        = string
  default     = null
}

variable "key_name" {
  description = "EC2 key pair for SSH; null for none."
  type        = string
  default     = null
}
