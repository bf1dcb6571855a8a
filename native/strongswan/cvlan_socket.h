/*
 * Copyright (C) 2026 cvlan-vrouter authors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

/**
 * @defgroup cvlan_socket cvlan_socket
 * @{ @ingroup cvlan
 */

#ifndef CVLAN_SOCKET_H_
#define CVLAN_SOCKET_H_

#include <network/socket.h>

typedef struct cvlan_socket_t cvlan_socket_t;

/**
 * socket_t exchanging IKE packets with the data plane, which owns the UDP
 * ports.
 */
struct cvlan_socket_t {

	/**
	 * Implements socket_t interface.
	 */
	socket_t socket;
};

/**
 * Create the socket.
 */
cvlan_socket_t *cvlan_socket_create();

#endif /** CVLAN_SOCKET_H_ @}*/
