/*
 * Copyright (C) 2026 cvlan-vrouter authors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

/**
 * @defgroup cvlan cvlan
 * @ingroup cplugins
 *
 * Hands charon's kernel-IPsec calls and IKE packets to the cvlan data plane
 * over a unix socket, so the data plane owns the SAs and UDP 500/4500.
 *
 * @defgroup cvlan_plugin cvlan_plugin
 * @{ @ingroup cvlan
 */

#ifndef CVLAN_PLUGIN_H_
#define CVLAN_PLUGIN_H_

#include <plugins/plugin.h>

typedef struct cvlan_plugin_t cvlan_plugin_t;

/**
 * Plugin providing "kernel-ipsec" and "socket" through the data plane.
 */
struct cvlan_plugin_t {

	/**
	 * Implements plugin interface.
	 */
	plugin_t plugin;
};

#endif /** CVLAN_PLUGIN_H_ @}*/
