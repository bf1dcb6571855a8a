locals {
  count = var.ha ? 2 : 1
}

# Debian's own account publishes the official images.
data "aws_ami" "debian12" {
  most_recent = true
  owners      = ["136693071363"]
  filter {
    name   = "name"
    values = ["debian-12-amd64-*"]
  }
}

resource "aws_security_group" "public" {
  name        = "${var.name}-public"
  description = "cvlan-vrouter public side: IKE, NAT-T, ESP, WireGuard"
  vpc_id      = var.vpc_id

  ingress {
    description = "IKE"
    protocol    = "udp"
    from_port   = 500
    to_port     = 500
    cidr_blocks = var.peer_cidrs
  }
  ingress {
    description = "IKE NAT traversal and ESP-in-UDP"
    protocol    = "udp"
    from_port   = 4500
    to_port     = 4500
    cidr_blocks = var.peer_cidrs
  }
  ingress {
    description = "ESP (raw, for peers not behind NAT)"
    protocol    = "50"
    from_port   = 0
    to_port     = 0
    cidr_blocks = var.peer_cidrs
  }
  ingress {
    description = "WireGuard"
    protocol    = "udp"
    from_port   = 51820
    to_port     = 51820
    cidr_blocks = var.peer_cidrs
  }
  dynamic "ingress" {
    for_each = length(var.admin_cidrs) > 0 ? [1] : []
    content {
      description = "SSH"
      protocol    = "tcp"
      from_port   = 22
      to_port     = 22
      cidr_blocks = var.admin_cidrs
    }
  }
  egress {
    protocol    = "-1"
    from_port   = 0
    to_port     = 0
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_security_group" "private" {
  name        = "${var.name}-private"
  description = "cvlan-vrouter private side: everything from the tenant networks"
  vpc_id      = var.vpc_id

  ingress {
    protocol    = "-1"
    from_port   = 0
    to_port     = 0
    cidr_blocks = var.private_cidrs
  }
  egress {
    protocol    = "-1"
    from_port   = 0
    to_port     = 0
    cidr_blocks = ["0.0.0.0/0"]
  }
}

# The vrouter forwards packets that are neither from nor to its own addresses: the source/
# destination check must be off on both interfaces.
resource "aws_network_interface" "public" {
  count             = local.count
  subnet_id         = var.public_subnet_ids[count.index % length(var.public_subnet_ids)]
  security_groups   = [aws_security_group.public.id]
  source_dest_check = false
  tags              = { Name = "${var.name}-${count.index}-public" }
}

resource "aws_network_interface" "private" {
  count             = local.count
  subnet_id         = var.private_subnet_ids[count.index % length(var.private_subnet_ids)]
  security_groups   = [aws_security_group.private.id]
  source_dest_check = false
  tags              = { Name = "${var.name}-${count.index}-private" }
}

resource "aws_eip" "public" {
  count             = local.count
  domain            = "vpc"
  network_interface = aws_network_interface.public[count.index].id
  tags              = { Name = "${var.name}-${count.index}" }
}

resource "aws_instance" "vrouter" {
  count         = local.count
  ami           = coalesce(var.ami_id, data.aws_ami.debian12.id)
  instance_type = var.instance_type
  key_name      = var.key_name

  network_interface {
    network_interface_id = aws_network_interface.public[count.index].id
    device_index         = 0
  }
  network_interface {
    network_interface_id = aws_network_interface.private[count.index].id
    device_index         = 1
  }

  user_data = templatefile("${path.module}/../../cloud-init/user-data.yaml", {
    release_url      = var.release_url
    controller_url   = var.controller_url
    token            = var.registration_tokens[count.index]
    public_interface = "ens5"
  })
  user_data_replace_on_change = false

  # The registration token is in the user-data: IMDSv2 only, not reachable from containers.
  metadata_options {
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
  root_block_device {
    encrypted   = true
    volume_size = 16
  }
  tags = { Name = "${var.name}-${count.index}" }

  lifecycle {
    precondition {
      condition     = length(var.registration_tokens) >= local.count
      error_message = "registration_tokens needs one token per vrouter (2 with ha = true)."
    }
  }
}
