locals {
  count = var.ha ? 2 : 1
}

resource "azurerm_public_ip" "public" {
  count               = local.count
  name                = "${var.name}-${count.index}"
  resource_group_name = var.resource_group_name
  location            = var.location
  allocation_method   = "Static"
  sku                 = "Standard"
  zones               = [var.zones[count.index % length(var.zones)]]
}

resource "azurerm_network_security_group" "public" {
  name                = "${var.name}-public"
  resource_group_name = var.resource_group_name
  location            = var.location

  security_rule {
    name                       = "ike"
    priority                   = 100
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Udp"
    source_port_range          = "*"
    destination_port_range     = "500"
    source_address_prefixes    = var.peer_cidrs
    destination_address_prefix = "*"
  }
  security_rule {
    name                       = "ike-nat-t"
    priority                   = 110
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Udp"
    source_port_range          = "*"
    destination_port_range     = "4500"
    source_address_prefixes    = var.peer_cidrs
    destination_address_prefix = "*"
  }
  security_rule {
    name                       = "esp"
    priority                   = 120
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Esp"
    source_port_range          = "*"
    destination_port_range     = "*"
    source_address_prefixes    = var.peer_cidrs
    destination_address_prefix = "*"
  }
  security_rule {
    name                       = "wireguard"
    priority                   = 130
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Udp"
    source_port_range          = "*"
    destination_port_range     = "51820"
    source_address_prefixes    = var.peer_cidrs
    destination_address_prefix = "*"
  }
  dynamic "security_rule" {
    for_each = length(var.admin_cidrs) > 0 ? [1] : []
    content {
      name                       = "ssh"
      priority                   = 200
      direction                  = "Inbound"
      access                     = "Allow"
      protocol                   = "Tcp"
      source_port_range          = "*"
      destination_port_range     = "22"
      source_address_prefixes    = var.admin_cidrs
      destination_address_prefix = "*"
    }
  }
}

resource "azurerm_network_security_group" "private" {
  name                = "${var.name}-private"
  resource_group_name = var.resource_group_name
  location            = var.location

  security_rule {
    name                       = "tenants"
    priority                   = 100
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "*"
    source_port_range          = "*"
    destination_port_range     = "*"
    source_address_prefixes    = var.private_cidrs
    destination_address_prefix = "*"
  }
}

# The vrouter forwards packets that are neither from nor to its own addresses: IP forwarding
# must be on for both NICs.
resource "azurerm_network_interface" "public" {
  count                 = local.count
  name                  = "${var.name}-${count.index}-public"
  resource_group_name   = var.resource_group_name
  location              = var.location
  ip_forwarding_enabled = true

  ip_configuration {
    name                          = "public"
    subnet_id                     = var.public_subnet_id
    private_ip_address_allocation = "Dynamic"
    public_ip_address_id          = azurerm_public_ip.public[count.index].id
  }
}

resource "azurerm_network_interface" "private" {
  count                 = local.count
  name                  = "${var.name}-${count.index}-private"
  resource_group_name   = var.resource_group_name
  location              = var.location
  ip_forwarding_enabled = true

  ip_configuration {
    name                          = "private"
    subnet_id                     = var.private_subnet_id
    private_ip_address_allocation = "Dynamic"
  }
}

resource "azurerm_network_interface_security_group_association" "public" {
  count                     = local.count
  network_interface_id      = azurerm_network_interface.public[count.index].id
  network_security_group_id = azurerm_network_security_group.public.id
}

resource "azurerm_network_interface_security_group_association" "private" {
  count                     = local.count
  network_interface_id      = azurerm_network_interface.private[count.index].id
  network_security_group_id = azurerm_network_security_group.private.id
}

resource "azurerm_linux_virtual_machine" "vrouter" {
  count               = local.count
  name                = "${var.name}-${count.index}"
  resource_group_name = var.resource_group_name
  location            = var.location
  zone                = var.zones[count.index % length(var.zones)]
  size                = var.vm_size
  admin_username      = var.admin_username
  # The first NIC is the primary one (default route, public IP).
  network_interface_ids = [
    azurerm_network_interface.public[count.index].id,
    azurerm_network_interface.private[count.index].id,
  ]

  admin_ssh_key {
    username   = var.admin_username
    public_key = var.ssh_public_key
  }

  custom_data = base64encode(templatefile("${path.module}/../../cloud-init/user-data.yaml", {
    release_url      = var.release_url
    controller_url   = var.controller_url
    token            = var.registration_tokens[count.index]
    public_interface = "eth0"
  }))

  os_disk {
    caching              = "ReadWrite"
    storage_account_type = "Premium_LRS"
    disk_size_gb         = 30
  }

  source_image_reference {
    publisher = "Debian"
    offer     = "debian-12"
    sku       = "12-gen2"
    version   = "latest"
  }

  lifecycle {
    precondition {
      condition     = length(var.registration_tokens) >= local.count
      error_message = "registration_tokens needs one token per vrouter (2 with ha = true)."
    }
  }
}
