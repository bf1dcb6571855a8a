/*
 * Copyright (C) 2026 cvlan-vrouter authors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "cvlan_socket.h"
#include "cvlan_ipc.h"

#include <daemon.h>
#include <collections/blocking_queue.h>

/**
 * Tuning: IKE packets queued for charon's receiver before newer ones are
 * dropped, so a flood cannot exhaust memory while charon is busy.
 */
#define MAX_QUEUED 1024

typedef struct private_cvlan_socket_t private_cvlan_socket_t;

/**
 * Private data of the socket.
 */
struct private_cvlan_socket_t {

	/**
	 * Public interface.
	 */
	cvlan_socket_t public;

	/**
	 * Received packets, fed by the connection's reader thread.
	 */
	blocking_queue_t *queue;

	/**
	 * Packets in the queue.
	 */
	refcount_t queued;

	/**
	 * IKE port and NAT-T port the data plane listens on.
	 */
	uint16_t port;
	uint16_t natt;
};

/**
 * Called by the reader thread for every IKE packet from the data plane.
 */
static void enqueue_ike(private_cvlan_socket_t *this, host_t *src, host_t *dst,
						chunk_t ike)
{
	packet_t *packet;

	if (ref_cur(&this->queued) >= MAX_QUEUED)
	{
		/* not DBG1: a flood must not become a log flood */
		DBG2(DBG_NET, "cvlan: receive queue full, IKE packet from %#H dropped",
			 src);
		return;
	}
	packet = packet_create();
	packet->set_source(packet, src->clone(src));
	packet->set_destination(packet, dst->clone(dst));
	packet->set_data(packet, chunk_clone(ike));
	ref_get(&this->queued);
	this->queue->enqueue(this->queue, packet);
}

METHOD(socket_t, receive, status_t,
	private_cvlan_socket_t *this, packet_t **out)
{
	packet_t *packet;

	/* blocks, and is a cancellation point for charon's receiver thread */
	packet = this->queue->dequeue(this->queue);
	ignore_result(ref_put(&this->queued));
	DBG2(DBG_NET, "received packet: from %#H to %#H",
		 packet->get_source(packet), packet->get_destination(packet));
	*out = packet;
	return SUCCESS;
}

METHOD(socket_t, sender, status_t,
	private_cvlan_socket_t *this, packet_t *packet)
{
	host_t *src, *dst;
	chunk_t data;

	src = packet->get_source(packet);
	dst = packet->get_destination(packet);
	data = packet->get_data(packet);

	DBG2(DBG_NET, "sending packet: from %#H to %#H", src, dst);
	if (!cvlan_ipc->send_ike(cvlan_ipc, src, dst, data))
	{
		return FAILED;
	}
	return SUCCESS;
}

METHOD(socket_t, get_port, uint16_t,
	private_cvlan_socket_t *this, bool nat_t)
{
	return nat_t ? this->natt : this->port;
}

METHOD(socket_t, supported_families, socket_family_t,
	private_cvlan_socket_t *this)
{
	return SOCKET_FAMILY_BOTH;
}

METHOD(socket_t, destroy, void,
	private_cvlan_socket_t *this)
{
	cvlan_ipc->set_ike_handler(cvlan_ipc, NULL, NULL);
	this->queue->destroy_offset(this->queue, offsetof(packet_t, destroy));
	free(this);
}

/*
 * See header.
 */
cvlan_socket_t *cvlan_socket_create()
{
	private_cvlan_socket_t *this;

	if (!cvlan_ipc)
	{
		return NULL;
	}
	INIT(this,
		.public = {
			.socket = {
				.send = _sender,
				.receive = _receive,
				.get_port = _get_port,
				.supported_families = _supported_families,
				.destroy = _destroy,
			},
		},
		.queue = blocking_queue_create(),
		/* the data plane owns the sockets; these ports are what charon
		 * announces and uses for NAT detection */
		.port = lib->settings->get_int(lib->settings, "%s.port",
									   CHARON_UDP_PORT, lib->ns),
		.natt = lib->settings->get_int(lib->settings, "%s.port_nat_t",
									   CHARON_NATT_PORT, lib->ns),
	);

	cvlan_ipc->set_ike_handler(cvlan_ipc, (cvlan_ipc_ike_cb_t)enqueue_ike,
							   this);
	return &this->public;
}
