/*
 * Copyright (C) 2026 cvlan-vrouter authors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "cvlan_ipc.h"

#include <daemon.h>
#include <collections/linked_list.h>
#include <threading/thread.h>
#include <threading/mutex.h>
#include <threading/condvar.h>

#include <errno.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>

/** Bytes after the length word: type, flags, id */
#define HEADER_LEN 8
/** Largest value of the length word (an IKE packet plus addresses) */
#define MAX_FRAME (65535 + 1024)
/** Set in the type of a response */
#define RESPONSE_BIT 0x8000

/** Status byte of a response */
enum {
	WIRE_OK = 0,
	WIRE_FAILED = 1,
	WIRE_NOT_FOUND = 2,
	WIRE_NOT_SUPPORTED = 3,
	WIRE_INVALID = 4,
	WIRE_VERSION_MISMATCH = 5,
};

/** Tuning: first and largest pause between connection attempts, in ms */
#define BACKOFF_MIN 100
#define BACKOFF_MAX 3000
/** Tuning: default wait for a response, and for a connection, in ms */
#define DEFAULT_TIMEOUT 5000

cvlan_ipc_t *cvlan_ipc = NULL;

typedef struct private_cvlan_ipc_t private_cvlan_ipc_t;

typedef enum {
	/** no connection, the reader thread is (re)connecting */
	STATE_DOWN,
	/** connected, state being replayed by the reader thread */
	STATE_RESYNC,
	/** requests from any thread allowed */
	STATE_READY,
} conn_state_t;

/**
 * A request waiting for its response.
 */
typedef struct {
	uint32_t id;
	uint16_t type;
	bool done;
	/** response status byte, or -1 if the connection broke */
	int status;
	chunk_t reply;
} pending_t;

struct private_cvlan_ipc_t {

	/** Public interface */
	cvlan_ipc_t public;

	/** unix socket path of the data plane */
	char *path;

	/** response and connection wait, in ms */
	u_int timeout;

	/** connected socket, -1 if none */
	int fd;

	/** connection state */
	conn_state_t state;

	/** identity of the data-plane instance last synced with */
	uint64_t instance;

	/** TRUE once any data plane answered HELLO */
	bool had_instance;

	/** a state-changing request may not have reached the data plane */
	bool dirty;

	/** next request id, never 0 */
	uint32_t next_id;

	/** pending_t waiting for responses */
	linked_list_t *pending;

	/** protects everything above */
	mutex_t *mutex;

	/** signals state changes and responses */
	condvar_t *cond;

	/** serializes frames written to fd */
	mutex_t *write_lock;

	/** reader thread and its id */
	thread_t *reader;
	u_int reader_id;

	/** held while a callback runs, so unsetting one waits for it (recursive:
	 *  the replay dispatches IKE packets) */
	mutex_t *cb_lock;

	/** IKE packet receiver */
	cvlan_ipc_ike_cb_t ike_cb;
	void *ike_data;

	/** state replay */
	cvlan_ipc_resync_cb_t resync_cb;
	void *resync_data;
};

/*
 * See header.
 */
void cvlan_write_host(bio_writer_t *w, host_t *host)
{
	chunk_t addr;

	if (host && host->get_family(host) == AF_INET6)
	{
		addr = host->get_address(host);
		w->write_uint8(w, 6);
		w->write_data(w, addr);
		w->write_uint16(w, host->get_port(host));
	}
	else if (host && host->get_family(host) == AF_INET)
	{
		addr = host->get_address(host);
		w->write_uint8(w, 4);
		w->write_data(w, addr);
		w->write_uint16(w, host->get_port(host));
	}
	else
	{	/* an unset address is sent as the IPv4 wildcard */
		w->write_uint8(w, 4);
		w->write_uint32(w, 0);
		w->write_uint16(w, 0);
	}
}

/*
 * See header.
 */
bool cvlan_read_host(bio_reader_t *r, host_t **host)
{
	uint8_t family;
	uint16_t port;
	chunk_t addr;

	if (!r->read_uint8(r, &family) ||
		(family != 4 && family != 6) ||
		!r->read_data(r, family == 4 ? 4 : 16, &addr) ||
		!r->read_uint16(r, &port))
	{
		return FALSE;
	}
	*host = host_create_from_chunk(family == 4 ? AF_INET : AF_INET6, addr, port);
	return *host != NULL;
}

/**
 * Map a response status byte to charon's status.
 */
static status_t map_status(int status)
{
	switch (status)
	{
		case WIRE_OK:
			return SUCCESS;
		case WIRE_NOT_FOUND:
			return NOT_FOUND;
		case WIRE_NOT_SUPPORTED:
			return NOT_SUPPORTED;
		case WIRE_INVALID:
			return INVALID_ARG;
		default:
			return FAILED;
	}
}

/**
 * Requests that change state in the data plane; if one is lost the state has
 * to be replayed.
 */
static bool changes_state(uint16_t type)
{
	switch (type)
	{
		case CVLAN_ADD_SA:
		case CVLAN_UPDATE_SA:
		case CVLAN_DEL_SA:
		case CVLAN_FLUSH_SAS:
		case CVLAN_ADD_POLICY:
		case CVLAN_DEL_POLICY:
		case CVLAN_FLUSH_POLICIES:
			return TRUE;
		default:
			return FALSE;
	}
}

/**
 * Write a whole frame; the body is not copied, so key material in it stays
 * in the caller's (wiped) buffer.
 */
static bool write_frame(private_cvlan_ipc_t *this, int fd, uint16_t type,
						uint32_t id, chunk_t body)
{
	uint8_t head[4 + HEADER_LEN];
	struct iovec iov[2];
	size_t total, done = 0;
	ssize_t len;
	bool ok = TRUE;

	htoun32(head, HEADER_LEN + body.len);
	htoun16(head + 4, type);
	htoun16(head + 6, 0);
	htoun32(head + 8, id);
	total = sizeof(head) + body.len;

	this->write_lock->lock(this->write_lock);
	while (done < total)
	{
		int n = 0;

		if (done < sizeof(head))
		{
			iov[n].iov_base = head + done;
			iov[n++].iov_len = sizeof(head) - done;
			iov[n].iov_base = body.ptr;
			iov[n++].iov_len = body.len;
		}
		else
		{
			iov[n].iov_base = body.ptr + (done - sizeof(head));
			iov[n++].iov_len = total - done;
		}
		len = writev(fd, iov, n);
		if (len < 0 && errno == EINTR)
		{
			continue;
		}
		if (len <= 0)
		{
			DBG1(DBG_KNL, "cvlan: writing to data plane failed: %s",
				 strerror(errno));
			/* a partly written frame desynchronizes the stream */
			shutdown(fd, SHUT_RDWR);
			ok = FALSE;
			break;
		}
		done += len;
	}
	this->write_lock->unlock(this->write_lock);
	return ok;
}

/**
 * Read exactly len bytes; a cancellation point.
 */
static bool read_full(int fd, uint8_t *buf, size_t len)
{
	ssize_t n;
	bool old;

	while (len)
	{
		old = thread_cancelability(TRUE);
		n = read(fd, buf, len);
		thread_cancelability(old);
		if (n < 0 && errno == EINTR)
		{
			continue;
		}
		if (n <= 0)
		{
			return FALSE;
		}
		buf += n;
		len -= n;
	}
	return TRUE;
}

/**
 * Read one frame. Returns FALSE if the connection is unusable (closed,
 * corrupt length); body is allocated.
 */
static bool read_frame(int fd, uint16_t *type, uint32_t *id, chunk_t *body)
{
	uint8_t head[4 + HEADER_LEN];
	uint32_t len;

	/* check the length before waiting for anything it announces */
	if (!read_full(fd, head, 4))
	{
		return FALSE;
	}
	len = untoh32(head);
	if (len < HEADER_LEN || len > MAX_FRAME)
	{
		DBG1(DBG_KNL, "cvlan: refusing frame of length %u from data plane", len);
		return FALSE;
	}
	if (!read_full(fd, head + 4, HEADER_LEN))
	{
		return FALSE;
	}
	if (untoh16(head + 6) != 0)
	{
		DBG1(DBG_KNL, "cvlan: refusing frame with flags set");
		return FALSE;
	}
	*type = untoh16(head + 4);
	*id = untoh32(head + 8);
	*body = chunk_alloc(len - HEADER_LEN);
	if (!read_full(fd, body->ptr, body->len))
	{
		chunk_free(body);
		return FALSE;
	}
	return TRUE;
}

/**
 * Hand an IKE_PACKET event to the socket.
 */
static void dispatch_ike(private_cvlan_ipc_t *this, chunk_t body)
{
	bio_reader_t *r;
	host_t *src = NULL, *dst = NULL;
	chunk_t data;
	uint32_t len;

	r = bio_reader_create(body);
	if (!cvlan_read_host(r, &src) || !cvlan_read_host(r, &dst) ||
		!r->read_uint32(r, &len) || len > 65535 ||
		!r->read_data(r, len, &data) || r->remaining(r))
	{
		DBG1(DBG_KNL, "cvlan: refusing malformed IKE_PACKET");
	}
	else
	{
		this->cb_lock->lock(this->cb_lock);
		if (this->ike_cb)
		{
			this->ike_cb(this->ike_data, src, dst, data);
		}
		this->cb_lock->unlock(this->cb_lock);
	}
	DESTROY_IF(src);
	DESTROY_IF(dst);
	r->destroy(r);
}

/**
 * Raise an EXPIRE event in charon so it rekeys or deletes the CHILD_SA.
 */
static void dispatch_expire(private_cvlan_ipc_t *this, chunk_t body)
{
	bio_reader_t *r;
	host_t *dst = NULL;
	uint8_t proto, hard;
	uint32_t spi;

	r = bio_reader_create(body);
	if (!r->read_uint8(r, &proto) || !r->read_uint32(r, &spi) ||
		!cvlan_read_host(r, &dst) || !r->read_uint8(r, &hard) || hard > 1 ||
		r->remaining(r))
	{
		DBG1(DBG_KNL, "cvlan: refusing malformed EXPIRE");
	}
	else if (charon && charon->kernel)
	{
		DBG2(DBG_KNL, "cvlan: %s expire for SPI %.8x", hard ? "hard" : "soft",
			 spi);
		charon->kernel->expire(charon->kernel, proto, htonl(spi), dst, hard);
	}
	DESTROY_IF(dst);
	r->destroy(r);
}

/**
 * Complete the pending request a response belongs to.
 */
static void dispatch_response(private_cvlan_ipc_t *this, uint16_t type,
							  uint32_t id, chunk_t body)
{
	enumerator_t *enumerator;
	pending_t *pending;
	bool found = FALSE;

	this->mutex->lock(this->mutex);
	enumerator = this->pending->create_enumerator(this->pending);
	while (enumerator->enumerate(enumerator, &pending))
	{
		if (pending->id == id && !pending->done)
		{
			found = TRUE;
			if ((type & ~RESPONSE_BIT) != pending->type || !body.len)
			{
				DBG1(DBG_KNL, "cvlan: response %u has type %u, expected %u",
					 id, type & ~RESPONSE_BIT, pending->type);
				pending->status = WIRE_FAILED;
			}
			else
			{
				pending->status = body.ptr[0];
				pending->reply = chunk_clone(chunk_skip(body, 1));
			}
			pending->done = TRUE;
			break;
		}
	}
	enumerator->destroy(enumerator);
	this->cond->broadcast(this->cond);
	this->mutex->unlock(this->mutex);

	if (!found)
	{	/* late answer to a request that timed out */
		DBG1(DBG_KNL, "cvlan: dropping response to unknown request %u", id);
	}
}

/**
 * Handle one incoming frame. Responses are only expected when handled by the
 * normal dispatch (the synchronous path consumes its own).
 */
static void dispatch(private_cvlan_ipc_t *this, uint16_t type, uint32_t id,
					 chunk_t body)
{
	if (type & RESPONSE_BIT)
	{
		dispatch_response(this, type, id, body);
		return;
	}
	switch (type)
	{
		case CVLAN_IKE_PACKET:
			dispatch_ike(this, body);
			break;
		case CVLAN_EXPIRE:
			dispatch_expire(this, body);
			break;
		default:
			DBG1(DBG_KNL, "cvlan: refusing unexpected message type %u", type);
			break;
	}
}

/**
 * Request from the reader thread itself (HELLO, replay): write, then read
 * until the response arrives, dispatching events on the way.
 */
static status_t request_sync(private_cvlan_ipc_t *this, int fd, uint16_t type,
							 chunk_t body, chunk_t *reply)
{
	uint16_t rtype;
	uint32_t id, rid;
	chunk_t rbody;
	status_t status;

	this->mutex->lock(this->mutex);
	id = this->next_id++;
	if (!this->next_id)
	{
		this->next_id = 1;
	}
	this->mutex->unlock(this->mutex);

	if (!write_frame(this, fd, type, id, body))
	{
		return FAILED;
	}
	while (read_frame(fd, &rtype, &rid, &rbody))
	{
		if (rtype == (type | RESPONSE_BIT) && rid == id)
		{
			if (!rbody.len)
			{
				chunk_free(&rbody);
				return FAILED;
			}
			status = map_status(rbody.ptr[0]);
			if (reply)
			{
				*reply = chunk_clone(chunk_skip(rbody, 1));
			}
			if (type == CVLAN_HELLO && rbody.ptr[0] == WIRE_VERSION_MISMATCH)
			{
				status = DESTROY_ME;
			}
			chunk_free(&rbody);
			return status;
		}
		dispatch(this, rtype, rid, rbody);
		chunk_free(&rbody);
	}
	shutdown(fd, SHUT_RDWR);
	return FAILED;
}

METHOD(cvlan_ipc_t, request, status_t,
	private_cvlan_ipc_t *this, uint16_t type, chunk_t body, chunk_t *reply)
{
	pending_t pending = {
		.type = type,
		.status = -1,
	};
	timeval_t deadline;
	int fd;

	if (body.len > MAX_FRAME - HEADER_LEN)
	{
		return OUT_OF_RES;
	}
	if (thread_current_id() == this->reader_id)
	{	/* replay from within the reader thread */
		this->mutex->lock(this->mutex);
		fd = this->fd;
		this->mutex->unlock(this->mutex);
		return request_sync(this, fd, type, body, reply);
	}

	time_monotonic(&deadline);
	timeval_add_ms(&deadline, this->timeout);

	this->mutex->lock(this->mutex);
	while (this->state != STATE_READY)
	{
		if (this->cond->timed_wait_abs(this->cond, this->mutex, deadline))
		{
			if (changes_state(type))
			{
				this->dirty = TRUE;
			}
			this->mutex->unlock(this->mutex);
			DBG1(DBG_KNL, "cvlan: data plane at %s not connected", this->path);
			return FAILED;
		}
	}
	pending.id = this->next_id++;
	if (!this->next_id)
	{
		this->next_id = 1;
	}
	fd = this->fd;
	this->pending->insert_last(this->pending, &pending);
	this->mutex->unlock(this->mutex);

	if (write_frame(this, fd, type, pending.id, body))
	{
		this->mutex->lock(this->mutex);
		while (!pending.done)
		{
			if (this->cond->timed_wait_abs(this->cond, this->mutex, deadline))
			{
				DBG1(DBG_KNL, "cvlan: no response to request %u (type %u) "
					 "within %u ms", pending.id, type, this->timeout);
				break;
			}
		}
	}
	else
	{
		this->mutex->lock(this->mutex);
	}
	this->pending->remove(this->pending, &pending, NULL);
	if (pending.status < 0 && changes_state(type))
	{
		this->dirty = TRUE;
	}
	this->mutex->unlock(this->mutex);

	if (pending.status < 0)
	{
		chunk_free(&pending.reply);
		return FAILED;
	}
	if (reply && pending.status == WIRE_OK)
	{
		*reply = pending.reply;
	}
	else
	{
		chunk_free(&pending.reply);
	}
	return map_status(pending.status);
}

METHOD(cvlan_ipc_t, send_ike, bool,
	private_cvlan_ipc_t *this, host_t *src, host_t *dst, chunk_t ike)
{
	bio_writer_t *w;
	bool ok = FALSE;
	int fd = -1;

	if (ike.len > 65535)
	{
		return FALSE;
	}
	this->mutex->lock(this->mutex);
	if (this->state == STATE_READY)
	{
		fd = this->fd;
	}
	this->mutex->unlock(this->mutex);
	if (fd == -1)
	{
		DBG1(DBG_NET, "cvlan: data plane not connected, IKE packet to %#H "
			 "dropped", dst);
		return FALSE;
	}
	w = bio_writer_create(ike.len + 64);
	cvlan_write_host(w, src);
	cvlan_write_host(w, dst);
	w->write_uint32(w, ike.len);
	w->write_data(w, ike);
	ok = write_frame(this, fd, CVLAN_IKE_PACKET, 0, w->get_buf(w));
	w->destroy(w);
	return ok;
}

METHOD(cvlan_ipc_t, set_ike_handler, void,
	private_cvlan_ipc_t *this, cvlan_ipc_ike_cb_t cb, void *data)
{
	this->cb_lock->lock(this->cb_lock);
	this->ike_cb = cb;
	this->ike_data = data;
	this->cb_lock->unlock(this->cb_lock);
}

METHOD(cvlan_ipc_t, set_resync, void,
	private_cvlan_ipc_t *this, cvlan_ipc_resync_cb_t cb, void *data)
{
	this->cb_lock->lock(this->cb_lock);
	this->resync_cb = cb;
	this->resync_data = data;
	this->cb_lock->unlock(this->cb_lock);
}

/**
 * Sleep for ms; a cancellation point.
 */
static void pause_ms(u_int ms)
{
	bool old = thread_cancelability(TRUE);

	usleep(ms * 1000);
	thread_cancelability(old);
}

/**
 * Connect the unix socket, -1 on failure.
 */
static int connect_socket(private_cvlan_ipc_t *this)
{
	struct sockaddr_un addr = {
		.sun_family = AF_UNIX,
	};
	int fd, err;
	bool old;

	if (strlen(this->path) >= sizeof(addr.sun_path))
	{
		DBG1(DBG_KNL, "cvlan: socket path %s too long", this->path);
		return -1;
	}
	strncpy(addr.sun_path, this->path, sizeof(addr.sun_path) - 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
	{
		return -1;
	}
	old = thread_cancelability(TRUE);
	err = connect(fd, (struct sockaddr*)&addr, sizeof(addr));
	thread_cancelability(old);
	if (err)
	{
		close(fd);
		return -1;
	}
	return fd;
}

/**
 * Exchange HELLO; returns FALSE if the data plane refused or is unusable.
 */
static bool hello(private_cvlan_ipc_t *this, int fd, uint64_t *instance)
{
	bio_writer_t *w;
	bio_reader_t *r;
	chunk_t reply = chunk_empty;
	status_t status;
	uint16_t version = 0;
	uint64_t inst = 0;
	bool ok;

	w = bio_writer_create(64);
	w->write_uint16(w, CVLAN_PROTOCOL_VERSION);
	w->write_data16(w, chunk_from_str("charon " VERSION));
	status = request_sync(this, fd, CVLAN_HELLO, w->get_buf(w), &reply);
	w->destroy(w);

	r = bio_reader_create(reply);
	ok = r->read_uint16(r, &version) && r->read_uint64(r, &inst) &&
		 !r->remaining(r);
	r->destroy(r);
	chunk_free(&reply);

	if (status == DESTROY_ME || (ok && version != CVLAN_PROTOCOL_VERSION))
	{
		DBG1(DBG_KNL, "cvlan: data plane at %s speaks protocol version %u, "
			 "we speak %u: refused", this->path, version,
			 CVLAN_PROTOCOL_VERSION);
		return FALSE;
	}
	if (status != SUCCESS || !ok)
	{
		DBG1(DBG_KNL, "cvlan: HELLO to data plane at %s failed (%N)",
			 this->path, status_names, status);
		return FALSE;
	}
	*instance = inst;
	return TRUE;
}

/**
 * Fail every request waiting on the broken connection.
 */
static void fail_pending(private_cvlan_ipc_t *this)
{
	enumerator_t *enumerator;
	pending_t *pending;

	enumerator = this->pending->create_enumerator(this->pending);
	while (enumerator->enumerate(enumerator, &pending))
	{
		pending->done = TRUE;
	}
	enumerator->destroy(enumerator);
	this->cond->broadcast(this->cond);
}

/**
 * Run one connection: HELLO, replay, dispatch until it breaks. Returns TRUE if
 * the connection got as far as serving requests.
 */
static bool run_connection(private_cvlan_ipc_t *this, int fd)
{
	uint64_t instance;
	uint16_t type;
	uint32_t id;
	chunk_t body;
	bool replay, ok;

	this->mutex->lock(this->mutex);
	this->fd = fd;
	this->state = STATE_RESYNC;
	this->mutex->unlock(this->mutex);

	if (!hello(this, fd, &instance))
	{
		return FALSE;
	}

	this->mutex->lock(this->mutex);
	/* the same instance kept what we installed, unless a change was lost */
	replay = !this->had_instance || this->instance != instance || this->dirty;
	this->mutex->unlock(this->mutex);

	if (replay)
	{
		/* whatever the data plane holds from an earlier connection (or an
		 * earlier charon) is unknown to us: start from nothing */
		DBG1(DBG_KNL, "cvlan: syncing SAs and policies to data plane "
			 "instance %.16llx", (unsigned long long)instance);
		this->cb_lock->lock(this->cb_lock);
		ok = request_sync(this, fd, CVLAN_FLUSH_POLICIES, chunk_empty,
						  NULL) == SUCCESS &&
			 request_sync(this, fd, CVLAN_FLUSH_SAS, chunk_empty,
						  NULL) == SUCCESS &&
			 (!this->resync_cb || this->resync_cb(this->resync_data));
		this->cb_lock->unlock(this->cb_lock);
		if (!ok)
		{
			DBG1(DBG_KNL, "cvlan: sync with data plane failed, reconnecting");
			return FALSE;
		}
	}

	this->mutex->lock(this->mutex);
	this->instance = instance;
	this->had_instance = TRUE;
	this->dirty = FALSE;
	this->state = STATE_READY;
	this->cond->broadcast(this->cond);
	this->mutex->unlock(this->mutex);
	DBG1(DBG_KNL, "cvlan: connected to data plane at %s", this->path);

	while (read_frame(fd, &type, &id, &body))
	{
		dispatch(this, type, id, body);
		chunk_free(&body);
	}
	DBG1(DBG_KNL, "cvlan: connection to data plane at %s lost", this->path);
	return TRUE;
}

/**
 * Cleanup handler if the reader is cancelled inside a connection.
 */
static void reader_cleanup(private_cvlan_ipc_t *this)
{
	this->mutex->lock(this->mutex);
	if (this->fd != -1)
	{
		close(this->fd);
		this->fd = -1;
	}
	this->state = STATE_DOWN;
	fail_pending(this);
	this->mutex->unlock(this->mutex);
}

/**
 * Reader thread: connect with backoff, run the connection, repeat.
 */
static void *reader(private_cvlan_ipc_t *this)
{
	u_int backoff = BACKOFF_MIN;
	bool logged = FALSE;
	int fd;

	/* cancelled only where it blocks, never while holding a lock */
	thread_cancelability(FALSE);
	this->reader_id = thread_current_id();
	thread_cleanup_push((thread_cleanup_t)reader_cleanup, this);
	while (TRUE)
	{
		fd = connect_socket(this);
		if (fd == -1)
		{
			if (!logged)
			{
				DBG1(DBG_KNL, "cvlan: data plane at %s not reachable (%s), "
					 "retrying", this->path, strerror(errno));
				logged = TRUE;
			}
			pause_ms(backoff);
			backoff = min(backoff * 2, BACKOFF_MAX);
			continue;
		}
		logged = FALSE;
		if (run_connection(this, fd))
		{	/* a restarted data plane is back soon */
			backoff = BACKOFF_MIN;
		}
		reader_cleanup(this);
		/* but one that refuses us must not be hammered */
		pause_ms(backoff);
		backoff = min(backoff * 2, BACKOFF_MAX);
	}
	thread_cleanup_pop(TRUE);
	return NULL;
}

METHOD(cvlan_ipc_t, destroy, void,
	private_cvlan_ipc_t *this)
{
	if (this->reader)
	{
		this->reader->cancel(this->reader);
		this->reader->join(this->reader);
	}
	this->pending->destroy(this->pending);
	this->cond->destroy(this->cond);
	this->mutex->destroy(this->mutex);
	this->write_lock->destroy(this->write_lock);
	this->cb_lock->destroy(this->cb_lock);
	free(this->path);
	free(this);
}

/*
 * See header.
 */
cvlan_ipc_t *cvlan_ipc_create()
{
	private_cvlan_ipc_t *this;

	INIT(this,
		.public = {
			.request = _request,
			.send_ike = _send_ike,
			.set_ike_handler = _set_ike_handler,
			.set_resync = _set_resync,
			.destroy = _destroy,
		},
		.path = strdup(lib->settings->get_str(lib->settings,
								"%s.plugins.cvlan.socket",
								"/run/cvlan/charon.sock", lib->ns)),
		.timeout = lib->settings->get_int(lib->settings,
								"%s.plugins.cvlan.timeout",
								DEFAULT_TIMEOUT, lib->ns),
		.fd = -1,
		.state = STATE_DOWN,
		.next_id = 1,
		.reader_id = -1,
		.pending = linked_list_create(),
		.mutex = mutex_create(MUTEX_TYPE_DEFAULT),
		.cond = condvar_create(CONDVAR_TYPE_DEFAULT),
		.write_lock = mutex_create(MUTEX_TYPE_DEFAULT),
		.cb_lock = mutex_create(MUTEX_TYPE_RECURSIVE),
	);

	this->reader = thread_create((thread_main_t)reader, this);
	if (!this->reader)
	{
		DBG1(DBG_KNL, "cvlan: cannot start reader thread");
		destroy(this);
		return NULL;
	}
	return &this->public;
}
