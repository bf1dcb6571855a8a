/*
 * Copyright (C) 2026 cvlan-vrouter authors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

/*
 * Fuzz target for the charon plugin's side of the protocol: what the plugin
 * reads from the data plane's socket. The input is a byte stream as it would
 * arrive on the socket; it is read with the plugin's own read_frame() and each
 * frame handed to its dispatch() (IKE_PACKET and EXPIRE events, responses to
 * pending requests), exactly as the reader thread does.
 *
 * The plugin source is included so its static functions are reachable
 * unchanged. Built by scripts/fuzz.sh with afl-clang-fast (persistent mode,
 * AddressSanitizer); built with a plain compiler it replays stdin.
 */

#define _GNU_SOURCE
#include "../../native/strongswan/cvlan_ipc.c"

#include <sys/mman.h>

#ifndef __AFL_FUZZ_TESTCASE_LEN
/* replay without AFL++: one input on stdin */
static ssize_t fuzz_len;
static unsigned char fuzz_buf[MAX_FRAME * 4];
#define __AFL_FUZZ_TESTCASE_LEN fuzz_len
#define __AFL_FUZZ_TESTCASE_BUF fuzz_buf
#define __AFL_FUZZ_INIT() void afl_unused(void)
#define __AFL_INIT() do {} while (0)
#define __AFL_LOOP(x) \
	((fuzz_len = read(0, fuzz_buf, sizeof(fuzz_buf))) >= 0 && !replayed++)
static int replayed;
#define CVLAN_FUZZ_REPLAY
#endif

/* what the replay reports, so a seed can be seen to reach the decoders */
static int frames, ike_packets, responses;

__AFL_FUZZ_INIT();

/* charon's logging is not what is under test */
static void quiet(debug_t group, level_t level, char *fmt, ...)
{
}

/* Touch everything the plugin hands over, so a bad pointer or length shows */
static void ike_cb(void *data, host_t *src, host_t *dst, chunk_t ike)
{
	volatile uint8_t sum = 0;
	size_t i;

	for (i = 0; i < ike.len; i++)
	{
		sum ^= ike.ptr[i];
	}
	sum ^= src->get_port(src) ^ dst->get_port(dst);
	(void)sum;
	ike_packets++;
}

/* Requests waiting for a response: ids 1 to 4, of the types the plugin
 * parses replies of */
static const uint16_t pending_types[] = {
	CVLAN_GET_SPI, CVLAN_GET_CPI, CVLAN_QUERY_SA, CVLAN_QUERY_POLICY,
};

int main(int argc, char *argv[])
{
	private_cvlan_ipc_t this = {};
	pending_t pending[countof(pending_types)];
	uint16_t type;
	uint32_t id;
	chunk_t body;
	int fd, i;

	/* the plugin logs through charon's bus; no loggers are registered */
	if (!library_init(NULL, "cvlan-fuzz") || !libcharon_init())
	{
		return 1;
	}
	dbg = quiet;
	/* EXPIRE is decoded in full but not raised: with no processor threads
	 * the jobs would only pile up */
	kernel_interface_t *kernel = charon->kernel;
	charon->kernel = NULL;
	this.mutex = mutex_create(MUTEX_TYPE_DEFAULT);
	this.cond = condvar_create(CONDVAR_TYPE_DEFAULT);
	this.cb_lock = mutex_create(MUTEX_TYPE_RECURSIVE);
	this.pending = linked_list_create();
	this.ike_cb = ike_cb;

	/* read_frame() reads a file descriptor: the input goes into a memfd */
	fd = memfd_create("cvlan-fuzz", 0);
	if (fd < 0)
	{
		return 1;
	}

	__AFL_INIT();
	unsigned char *buf = __AFL_FUZZ_TESTCASE_BUF;
	while (__AFL_LOOP(10000))
	{
		ssize_t len = __AFL_FUZZ_TESTCASE_LEN;

		for (i = 0; i < countof(pending_types); i++)
		{
			pending[i] = (pending_t){ .id = i + 1, .type = pending_types[i] };
			this.pending->insert_last(this.pending, &pending[i]);
		}
		if (ftruncate(fd, 0) || pwrite(fd, buf, len, 0) != len ||
			lseek(fd, 0, SEEK_SET))
		{
			return 1;
		}
		while (read_frame(fd, &type, &id, &body))
		{
			dispatch(&this, type, id, body);
			chunk_free(&body);
			frames++;
		}
		for (i = 0; i < countof(pending_types); i++)
		{
			responses += pending[i].done;
			this.pending->remove(this.pending, &pending[i], NULL);
			chunk_free(&pending[i].reply);
		}
	}
	close(fd);
	this.pending->destroy(this.pending);
	this.cb_lock->destroy(this.cb_lock);
	this.cond->destroy(this.cond);
	this.mutex->destroy(this.mutex);
	charon->kernel = kernel;
	libcharon_deinit();
	library_deinit();
#ifdef CVLAN_FUZZ_REPLAY
	fprintf(stderr, "frames %d, IKE packets %d, responses %d\n", frames,
			ike_packets, responses);
#endif
	return 0;
}
