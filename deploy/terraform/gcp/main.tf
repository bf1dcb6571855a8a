locals {
  count = var.ha ? 2 : 1
}

resource "google_compute_address" "public" {
  count   = local.count
  project = var.project
  region  = var.region
  name    = "${var.name}-${count.index}"
}

resource "google_compute_firewall" "tunnels" {
  project     = var.project
  name        = "${var.name}-tunnels"
  network     = var.public_network
  description = "cvlan-vrouter public side: IKE, NAT-T, ESP, WireGuard"
  direction   = "INGRESS"

  allow {
    protocol = "udp"
    ports    = ["500", "4500", "51820"]
  }
  allow {
    protocol = "esp"
  }
  source_ranges = var.peer_cidrs
  target_tags   = [var.name]
}

resource "google_compute_firewall" "ssh" {
  count         = length(var.admin_cidrs) > 0 ? 1 : 0
  project       = var.project
  name          = "${var.name}-ssh"
  network       = var.public_network
  direction     = "INGRESS"
  source_ranges = var.admin_cidrs
  target_tags   = [var.name]
  allow {
    protocol = "tcp"
    ports    = ["22"]
  }
}

resource "google_compute_firewall" "private" {
  project       = var.project
  name          = "${var.name}-private"
  network       = var.private_network
  description   = "cvlan-vrouter private side: everything from the tenant networks"
  direction     = "INGRESS"
  source_ranges = var.private_cidrs
  target_tags   = [var.name]
  allow {
    protocol = "all"
  }
}

resource "google_compute_instance" "vrouter" {
  count        = local.count
  project      = var.project
  name         = "${var.name}-${count.index}"
  zone         = var.zones[count.index % length(var.zones)]
  machine_type = var.machine_type
  tags         = [var.name]

  # The vrouter forwards packets that are neither from nor to its own addresses.
  can_ip_forward = true

  boot_disk {
    initialize_params {
      image = var.image
      size  = 16
    }
  }

  network_interface {
    subnetwork = var.public_subnetwork
    access_config {
      nat_ip = google_compute_address.public[count.index].address
    }
  }
  network_interface {
    subnetwork = var.private_subnetwork
  }

  metadata = {
    user-data = templatefile("${path.module}/../../cloud-init/user-data.yaml", {
      release_url      = var.release_url
      controller_url   = var.controller_url
      token            = var.registration_tokens[count.index]
      public_interface = "ens4"
    })
    block-project-ssh-keys = true
  }

  shielded_instance_config {
    enable_secure_boot = true
  }

  lifecycle {
    precondition {
      condition     = length(var.registration_tokens) >= local.count
      error_message = "registration_tokens needs one token per vrouter (2 with ha = true)."
    }
  }
}
