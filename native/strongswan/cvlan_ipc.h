/*
 * Copyright (C) 2026 cvlan-vrouter authors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

/**
 * @defgroup cvlan_ipc cvlan_ipc
 * @{ @ingroup cvlan
 */

#ifndef CVLAN_IPC_H_
#define CVLAN_IPC_H_

#include <library.h>
#include <networking/host.h>
#include <bio/bio_writer.h>
#include <bio/bio_reader.h>

typedef struct cvlan_ipc_t cvlan_ipc_t;

/**
 * Protocol version spoken (docs/charon-plugin-protocol.md).
 */
#define CVLAN_PROTOCOL_VERSION 1

/**
 * Message types, see docs/charon-plugin-protocol.md.
 */
enum {
	CVLAN_HELLO = 1,
	CVLAN_GET_SPI = 2,
	CVLAN_GET_CPI = 3,
	CVLAN_ADD_SA = 4,
	CVLAN_UPDATE_SA = 5,
	CVLAN_QUERY_SA = 6,
	CVLAN_DEL_SA = 7,
	CVLAN_FLUSH_SAS = 8,
	CVLAN_ADD_POLICY = 9,
	CVLAN_QUERY_POLICY = 10,
	CVLAN_DEL_POLICY = 11,
	CVLAN_FLUSH_POLICIES = 12,
	CVLAN_BYPASS_SOCKET = 13,
	CVLAN_ENABLE_UDP_DECAP = 14,
	CVLAN_IKE_PACKET = 32,
	CVLAN_EXPIRE = 33,
};

/**
 * Called from the connection's reader thread with an IKE message (non-ESP
 * marker already stripped by the data plane). The callee owns nothing passed.
 */
typedef void (*cvlan_ipc_ike_cb_t)(void *data, host_t *src, host_t *dst,
								   chunk_t ike);

/**
 * Called from the reader thread after a (re)connect, before other requests
 * are let through, to reinstall state with requests of its own.
 *
 * @return			FALSE if the replay failed (the connection is reset)
 */
typedef bool (*cvlan_ipc_resync_cb_t)(void *data);

/**
 * The connection to the data plane: framing, request/response matching,
 * reconnect with backoff, and a reader thread dispatching what arrives.
 */
struct cvlan_ipc_t {

	/**
	 * Send a request and wait for its response. Safe to call from any thread.
	 *
	 * @param type		message type (CVLAN_*)
	 * @param body		encoded body, may contain key material
	 * @param reply		response body after the status byte on SUCCESS
	 *					(allocated, free it), or NULL
	 * @return			the data plane's status, FAILED on transport errors
	 *					or timeouts, OUT_OF_RES if the body is too large
	 */
	status_t (*request)(cvlan_ipc_t *this, uint16_t type, chunk_t body,
						chunk_t *reply);

	/**
	 * Send an IKE message out through the data plane, no response.
	 *
	 * @return			TRUE if it was handed to the connection
	 */
	bool (*send_ike)(cvlan_ipc_t *this, host_t *src, host_t *dst, chunk_t ike);

	/**
	 * Set the receiver of incoming IKE packets (NULL to unset).
	 */
	void (*set_ike_handler)(cvlan_ipc_t *this, cvlan_ipc_ike_cb_t cb,
							void *data);

	/**
	 * Set the state replay run after a reconnect (NULL to unset).
	 */
	void (*set_resync)(cvlan_ipc_t *this, cvlan_ipc_resync_cb_t cb,
					   void *data);

	/**
	 * Stop the reader thread and close the connection.
	 */
	void (*destroy)(cvlan_ipc_t *this);
};

/**
 * Create the connection; its reader thread starts connecting at once.
 */
cvlan_ipc_t *cvlan_ipc_create();

/**
 * The plugin's single connection, shared by the kernel-ipsec and socket
 * objects (their constructors take no arguments).
 */
extern cvlan_ipc_t *cvlan_ipc;

/**
 * Encoding functions shared by the plugin's objects (protocol field layouts).
 */
void cvlan_write_host(bio_writer_t *w, host_t *host);
bool cvlan_read_host(bio_reader_t *r, host_t **host);

#endif /** CVLAN_IPC_H_ @}*/
