/*
 * Copyright (C) 2026 cvlan-vrouter authors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

/**
 * @defgroup cvlan_kernel_ipsec cvlan_kernel_ipsec
 * @{ @ingroup cvlan
 */

#ifndef CVLAN_KERNEL_IPSEC_H_
#define CVLAN_KERNEL_IPSEC_H_

#include <kernel/kernel_ipsec.h>

typedef struct cvlan_kernel_ipsec_t cvlan_kernel_ipsec_t;

/**
 * kernel_ipsec_t that installs SAs and policies in the cvlan data plane and
 * replays them when the data plane restarts.
 */
struct cvlan_kernel_ipsec_t {

	/**
	 * Implements kernel_ipsec_t interface.
	 */
	kernel_ipsec_t interface;
};

/**
 * Create the kernel-ipsec backend.
 */
cvlan_kernel_ipsec_t *cvlan_kernel_ipsec_create();

#endif /** CVLAN_KERNEL_IPSEC_H_ @}*/
