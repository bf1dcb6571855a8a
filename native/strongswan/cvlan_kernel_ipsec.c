/*
 * Copyright (C) 2026 cvlan-vrouter authors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "cvlan_kernel_ipsec.h"
#include "cvlan_ipc.h"

#include <daemon.h>
#include <collections/hashtable.h>
#include <collections/linked_list.h>
#include <threading/mutex.h>

/** Bounds shared with the data plane (docs/charon-plugin-protocol.md) */
#define MAX_TS 64
#define MAX_KEY 256
#define MAX_IFNAME 15
/** SA flag bits */
#define FLAG_ENCAP     (1 << 0)
#define FLAG_ESN       (1 << 1)
#define FLAG_COPY_DF   (1 << 2)
#define FLAG_COPY_ECN  (1 << 3)
#define FLAG_INITIATOR (1 << 4)
#define FLAG_INBOUND   (1 << 5)
#define FLAG_UPDATE    (1 << 6)
/** Idle time meaning "never used" */
#define IDLE_NEVER 0xffffffff

typedef struct private_cvlan_kernel_ipsec_t private_cvlan_kernel_ipsec_t;

/**
 * Private data of the kernel-ipsec backend.
 */
struct private_cvlan_kernel_ipsec_t {

	/**
	 * Public interface.
	 */
	cvlan_kernel_ipsec_t public;

	/**
	 * Installed SAs (sa_entry_t), replayed after a data-plane restart.
	 */
	hashtable_t *sas;

	/**
	 * Installed policies (policy_entry_t) in installation order.
	 */
	linked_list_t *policies;

	/**
	 * Protects sas and policies.
	 */
	mutex_t *mutex;

	/**
	 * Features announced to charon.
	 */
	kernel_feature_t features;
};

/**
 * An installed SA; the key fields identify it as charon does.
 */
typedef struct {
	host_t *dst;
	uint32_t spi;
	uint8_t proto;
	uint32_t if_id;
	mark_t mark;
	/** the ADD_SA body as sent, holds key material: wiped on destroy */
	chunk_t body;
	/** length of the SA id at the start of body */
	size_t id_len;
} sa_entry_t;

/**
 * An installed policy.
 */
typedef struct {
	/** ADD_POLICY body as sent */
	chunk_t body;
	/** length of the policy id at the start of body */
	size_t id_len;
} policy_entry_t;

static void sa_entry_destroy(sa_entry_t *entry)
{
	entry->dst->destroy(entry->dst);
	chunk_clear(&entry->body);
	free(entry);
}

static void policy_entry_destroy(policy_entry_t *entry)
{
	chunk_free(&entry->body);
	free(entry);
}

static u_int sa_hash(const sa_entry_t *key)
{
	return chunk_hash_inc(key->dst->get_address(key->dst),
				chunk_hash_inc(chunk_from_thing(key->if_id),
					chunk_hash(chunk_from_thing(key->spi))));
}

static bool sa_equals(const sa_entry_t *a, const sa_entry_t *b)
{
	return a->spi == b->spi && a->proto == b->proto && a->if_id == b->if_id &&
		   a->mark.value == b->mark.value && a->mark.mask == b->mark.mask &&
		   a->dst->ip_equals(a->dst, b->dst);
}

/**
 * Lookup key for an SA id (borrows id->dst).
 */
static sa_entry_t sa_key(kernel_ipsec_sa_id_t *id)
{
	return (sa_entry_t){
		.dst = id->dst,
		.spi = id->spi,
		.proto = id->proto,
		.if_id = id->if_id,
		.mark = id->mark,
	};
}

static void write_ip(bio_writer_t *w, chunk_t addr)
{
	w->write_uint8(w, addr.len == 16 ? 6 : 4);
	w->write_data(w, addr);
}

static void write_mark(bio_writer_t *w, mark_t mark)
{
	w->write_uint32(w, mark.value);
	w->write_uint32(w, mark.mask);
}

static void write_ts(bio_writer_t *w, traffic_selector_t *ts)
{
	w->write_uint8(w, ts->get_protocol(ts));
	w->write_uint16(w, ts->get_from_port(ts));
	w->write_uint16(w, ts->get_to_port(ts));
	write_ip(w, ts->get_from_address(ts));
	write_ip(w, ts->get_to_address(ts));
}

static bool write_ts_list(bio_writer_t *w, linked_list_t *list)
{
	enumerator_t *enumerator;
	traffic_selector_t *ts;
	int count = list ? list->get_count(list) : 0;

	if (count > MAX_TS)
	{
		DBG1(DBG_KNL, "cvlan: %d traffic selectors exceed the bound of %d",
			 count, MAX_TS);
		return FALSE;
	}
	w->write_uint16(w, count);
	if (list)
	{
		enumerator = list->create_enumerator(list);
		while (enumerator->enumerate(enumerator, &ts))
		{
			write_ts(w, ts);
		}
		enumerator->destroy(enumerator);
	}
	return TRUE;
}

static bool write_ifname(bio_writer_t *w, char *name)
{
	chunk_t s = name ? chunk_from_str(name) : chunk_empty;

	if (s.len > MAX_IFNAME)
	{
		DBG1(DBG_KNL, "cvlan: interface name %s too long", name);
		return FALSE;
	}
	w->write_data16(w, s);
	return TRUE;
}

static void write_lifetime(bio_writer_t *w, lifetime_cfg_t *lt)
{
	lifetime_cfg_t none = {};

	lt = lt ?: &none;
	w->write_uint64(w, lt->time.life);
	w->write_uint64(w, lt->time.rekey);
	w->write_uint64(w, lt->time.jitter);
	w->write_uint64(w, lt->bytes.life);
	w->write_uint64(w, lt->bytes.rekey);
	w->write_uint64(w, lt->bytes.jitter);
	w->write_uint64(w, lt->packets.life);
	w->write_uint64(w, lt->packets.rekey);
	w->write_uint64(w, lt->packets.jitter);
}

/**
 * The wire's mode values, independent of charon's enum.
 */
static bool wire_mode(ipsec_mode_t mode, uint8_t *out)
{
	switch (mode)
	{
		case MODE_TRANSPORT:
			*out = 1;
			return TRUE;
		case MODE_TUNNEL:
			*out = 2;
			return TRUE;
		case MODE_BEET:
			*out = 3;
			return TRUE;
		case MODE_PASS:
			*out = 4;
			return TRUE;
		case MODE_DROP:
			*out = 5;
			return TRUE;
		default:
			return FALSE;
	}
}

/**
 * SPIs travel as numbers (the bytes of the ESP header); charon keeps them in
 * network order.
 */
static void write_sa_id(bio_writer_t *w, host_t *src, host_t *dst,
						kernel_ipsec_sa_id_t *id)
{
	cvlan_write_host(w, src);
	cvlan_write_host(w, dst);
	w->write_uint32(w, ntohl(id->spi));
	w->write_uint8(w, id->proto);
	write_mark(w, id->mark);
	w->write_uint32(w, id->if_id);
}

/**
 * Send a request whose body the writer holds, then wipe it.
 */
static status_t send_request(uint16_t type, bio_writer_t *w, chunk_t *reply)
{
	chunk_t body = w->extract_buf(w);
	status_t status;

	w->destroy(w);
	status = cvlan_ipc->request(cvlan_ipc, type, body, reply);
	chunk_clear(&body);
	return status;
}

METHOD(kernel_ipsec_t, get_features, kernel_feature_t,
	private_cvlan_kernel_ipsec_t *this)
{
	return this->features;
}

METHOD(kernel_ipsec_t, get_spi, status_t,
	private_cvlan_kernel_ipsec_t *this, host_t *src, host_t *dst,
	uint8_t protocol, uint32_t *spi)
{
	bio_writer_t *w;
	bio_reader_t *r;
	chunk_t reply = chunk_empty;
	status_t status;
	uint32_t value = 0;

	w = bio_writer_create(64);
	cvlan_write_host(w, src);
	cvlan_write_host(w, dst);
	w->write_uint8(w, protocol);
	status = cvlan_ipc->request(cvlan_ipc, CVLAN_GET_SPI, w->get_buf(w), &reply);
	w->destroy(w);
	if (status == SUCCESS)
	{
		r = bio_reader_create(reply);
		if (!r->read_uint32(r, &value) || r->remaining(r) || value < 256)
		{	/* SPIs 1..255 are reserved (RFC 4303 2.1), 0 is invalid */
			DBG1(DBG_KNL, "cvlan: invalid GET_SPI response");
			status = FAILED;
		}
		r->destroy(r);
	}
	chunk_free(&reply);
	if (status != SUCCESS)
	{
		DBG1(DBG_KNL, "cvlan: unable to get SPI (%N)", status_names, status);
		return status;
	}
	*spi = htonl(value);
	DBG2(DBG_KNL, "cvlan: got SPI %.8x", value);
	return SUCCESS;
}

METHOD(kernel_ipsec_t, get_cpi, status_t,
	private_cvlan_kernel_ipsec_t *this, host_t *src, host_t *dst,
	uint16_t *cpi)
{
	bio_writer_t *w;
	bio_reader_t *r;
	chunk_t reply = chunk_empty;
	status_t status;
	uint16_t value = 0;

	w = bio_writer_create(64);
	cvlan_write_host(w, src);
	cvlan_write_host(w, dst);
	status = cvlan_ipc->request(cvlan_ipc, CVLAN_GET_CPI, w->get_buf(w), &reply);
	w->destroy(w);
	if (status == SUCCESS)
	{
		r = bio_reader_create(reply);
		if (!r->read_uint16(r, &value) || r->remaining(r))
		{
			status = FAILED;
		}
		r->destroy(r);
	}
	chunk_free(&reply);
	if (status == SUCCESS)
	{
		*cpi = htons(value);
	}
	return status;
}

METHOD(kernel_ipsec_t, add_sa, status_t,
	private_cvlan_kernel_ipsec_t *this, kernel_ipsec_sa_id_t *id,
	kernel_ipsec_add_sa_t *data)
{
	bio_writer_t *w;
	sa_entry_t *entry, *old;
	uint8_t mode, flags = 0;
	size_t id_len;
	int ts_count;
	status_t status;

	if (!wire_mode(data->mode, &mode))
	{
		DBG1(DBG_KNL, "cvlan: IPsec mode %N not supported", ipsec_mode_names,
			 data->mode);
		return NOT_SUPPORTED;
	}
	if (data->enc_key.len > MAX_KEY || data->int_key.len > MAX_KEY)
	{
		DBG1(DBG_KNL, "cvlan: key longer than %d bytes", MAX_KEY);
		return INVALID_ARG;
	}
	if (data->label)
	{
		DBG1(DBG_KNL, "cvlan: security labels not supported");
		return NOT_SUPPORTED;
	}
	flags |= data->encap ? FLAG_ENCAP : 0;
	flags |= data->esn ? FLAG_ESN : 0;
	flags |= data->copy_df ? FLAG_COPY_DF : 0;
	flags |= data->copy_ecn ? FLAG_COPY_ECN : 0;
	flags |= data->initiator ? FLAG_INITIATOR : 0;
	flags |= data->inbound ? FLAG_INBOUND : 0;
	flags |= data->update ? FLAG_UPDATE : 0;

	ts_count = (data->src_ts ? data->src_ts->get_count(data->src_ts) : 0) +
			   (data->dst_ts ? data->dst_ts->get_count(data->dst_ts) : 0);
	/* sized so the buffer never grows: growing would leave key copies in
	 * freed memory */
	w = bio_writer_create(512 + 40 * min(ts_count, 2 * MAX_TS) +
						  data->enc_key.len + data->int_key.len);
	write_sa_id(w, id->src, id->dst, id);
	id_len = w->get_buf(w).len;
	w->write_uint32(w, data->reqid);
	w->write_uint8(w, mode);
	if (!write_ts_list(w, data->src_ts) || !write_ts_list(w, data->dst_ts) ||
		!write_ifname(w, data->interface))
	{
		chunk_t body = w->extract_buf(w);

		w->destroy(w);
		chunk_clear(&body);
		return INVALID_ARG;
	}
	write_lifetime(w, data->lifetime);
	w->write_uint16(w, data->enc_alg);
	w->write_data16(w, data->enc_key);
	w->write_uint16(w, data->int_alg);
	w->write_data16(w, data->int_key);
	w->write_uint32(w, data->replay_window);
	w->write_uint32(w, data->tfc);
	w->write_uint16(w, data->ipcomp);
	w->write_uint16(w, ntohs(data->cpi));
	w->write_uint8(w, data->hw_offload);
	write_mark(w, data->mark);
	w->write_uint8(w, data->copy_dscp);
	w->write_uint8(w, flags);

	INIT(entry,
		.dst = id->dst->clone(id->dst),
		.spi = id->spi,
		.proto = id->proto,
		.if_id = id->if_id,
		.mark = id->mark,
		.body = w->extract_buf(w),
		.id_len = id_len,
	);
	w->destroy(w);

	DBG2(DBG_KNL, "cvlan: adding SAD entry with SPI %.8x, reqid {%u}, "
		 "if_id %u, %N/%N", ntohl(id->spi), data->reqid, id->if_id,
		 encryption_algorithm_names, data->enc_alg,
		 integrity_algorithm_names, data->int_alg);
	status = cvlan_ipc->request(cvlan_ipc, CVLAN_ADD_SA, entry->body, NULL);
	if (status != SUCCESS)
	{
		DBG1(DBG_KNL, "cvlan: unable to add SAD entry with SPI %.8x (%N)",
			 ntohl(id->spi), status_names, status);
		sa_entry_destroy(entry);
		return status;
	}
	this->mutex->lock(this->mutex);
	old = this->sas->put(this->sas, entry, entry);
	this->mutex->unlock(this->mutex);
	if (old)
	{
		sa_entry_destroy(old);
	}
	return SUCCESS;
}

METHOD(kernel_ipsec_t, update_sa, status_t,
	private_cvlan_kernel_ipsec_t *this, kernel_ipsec_sa_id_t *id,
	kernel_ipsec_update_sa_t *data)
{
	bio_writer_t *w;
	sa_entry_t key = sa_key(id), *entry;
	chunk_t tail;
	status_t status;

	w = bio_writer_create(128);
	write_sa_id(w, id->src, id->dst, id);
	w->write_uint16(w, ntohs(data->cpi));
	cvlan_write_host(w, data->new_src);
	cvlan_write_host(w, data->new_dst);
	w->write_uint8(w, data->encap);
	w->write_uint8(w, data->new_encap);
	w->write_uint32(w, data->new_reqid);
	status = send_request(CVLAN_UPDATE_SA, w, NULL);
	if (status != SUCCESS)
	{
		DBG1(DBG_KNL, "cvlan: unable to update SAD entry with SPI %.8x (%N)",
			 ntohl(id->spi), status_names, status);
		return status;
	}
	DBG2(DBG_KNL, "cvlan: updated SAD entry with SPI %.8x to %#H..%#H",
		 ntohl(id->spi), data->new_src, data->new_dst);

	/* keep the replayable copy in step: new addresses, encap and reqid */
	this->mutex->lock(this->mutex);
	entry = this->sas->remove(this->sas, &key);
	if (entry)
	{
		tail = chunk_skip(entry->body, entry->id_len);
		w = bio_writer_create(64 + tail.len);
		write_sa_id(w, data->new_src, data->new_dst, id);
		entry->id_len = w->get_buf(w).len;
		w->write_data(w, tail);
		chunk_clear(&entry->body);
		entry->body = w->extract_buf(w);
		w->destroy(w);
		if (data->new_reqid)
		{
			htoun32(entry->body.ptr + entry->id_len, data->new_reqid);
		}
		if (data->new_encap)
		{
			entry->body.ptr[entry->body.len - 1] |= FLAG_ENCAP;
		}
		else
		{
			entry->body.ptr[entry->body.len - 1] &= ~FLAG_ENCAP;
		}
		entry->dst->destroy(entry->dst);
		entry->dst = data->new_dst->clone(data->new_dst);
		entry = this->sas->put(this->sas, entry, entry);
		if (entry)
		{
			sa_entry_destroy(entry);
		}
	}
	this->mutex->unlock(this->mutex);
	return SUCCESS;
}

METHOD(kernel_ipsec_t, query_sa, status_t,
	private_cvlan_kernel_ipsec_t *this, kernel_ipsec_sa_id_t *id,
	kernel_ipsec_query_sa_t *data, uint64_t *bytes, uint64_t *packets,
	time_t *time)
{
	bio_writer_t *w;
	bio_reader_t *r;
	chunk_t reply = chunk_empty;
	uint64_t b = 0, p = 0;
	uint32_t idle = IDLE_NEVER;
	status_t status;

	w = bio_writer_create(96);
	write_sa_id(w, id->src, id->dst, id);
	w->write_uint16(w, ntohs(data->cpi));
	status = send_request(CVLAN_QUERY_SA, w, &reply);
	if (status == SUCCESS)
	{
		r = bio_reader_create(reply);
		if (!r->read_uint64(r, &b) || !r->read_uint64(r, &p) ||
			!r->read_uint32(r, &idle) || r->remaining(r))
		{
			DBG1(DBG_KNL, "cvlan: invalid QUERY_SA response");
			status = FAILED;
		}
		r->destroy(r);
	}
	chunk_free(&reply);
	if (status != SUCCESS)
	{
		DBG1(DBG_KNL, "cvlan: unable to query SAD entry with SPI %.8x (%N)",
			 ntohl(id->spi), status_names, status);
		return status;
	}
	if (bytes)
	{
		*bytes = b;
	}
	if (packets)
	{
		*packets = p;
	}
	if (time)
	{	/* an idle duration needs no clock shared with the data plane */
		*time = idle == IDLE_NEVER ? 0 : time_monotonic(NULL) - idle;
	}
	return SUCCESS;
}

METHOD(kernel_ipsec_t, del_sa, status_t,
	private_cvlan_kernel_ipsec_t *this, kernel_ipsec_sa_id_t *id,
	kernel_ipsec_del_sa_t *data)
{
	bio_writer_t *w;
	sa_entry_t key = sa_key(id), *entry;
	status_t status;

	/* charon forgets the SA whatever the outcome, so must the replay */
	this->mutex->lock(this->mutex);
	entry = this->sas->remove(this->sas, &key);
	this->mutex->unlock(this->mutex);
	if (entry)
	{
		sa_entry_destroy(entry);
	}

	w = bio_writer_create(96);
	write_sa_id(w, id->src, id->dst, id);
	w->write_uint16(w, ntohs(data->cpi));
	status = send_request(CVLAN_DEL_SA, w, NULL);
	if (status != SUCCESS)
	{
		DBG1(DBG_KNL, "cvlan: unable to delete SAD entry with SPI %.8x (%N)",
			 ntohl(id->spi), status_names, status);
		return status;
	}
	DBG2(DBG_KNL, "cvlan: deleted SAD entry with SPI %.8x", ntohl(id->spi));
	return SUCCESS;
}

METHOD(kernel_ipsec_t, flush_sas, status_t,
	private_cvlan_kernel_ipsec_t *this)
{
	enumerator_t *enumerator;
	sa_entry_t *entry;

	this->mutex->lock(this->mutex);
	enumerator = this->sas->create_enumerator(this->sas);
	while (enumerator->enumerate(enumerator, NULL, &entry))
	{
		this->sas->remove_at(this->sas, enumerator);
		sa_entry_destroy(entry);
	}
	enumerator->destroy(enumerator);
	this->mutex->unlock(this->mutex);
	return cvlan_ipc->request(cvlan_ipc, CVLAN_FLUSH_SAS, chunk_empty, NULL);
}

/**
 * Encode a policy id; FALSE if it exceeds a bound.
 */
static bool write_policy_id(bio_writer_t *w, kernel_ipsec_policy_id_t *id)
{
	w->write_uint8(w, id->dir);
	write_ts(w, id->src_ts);
	write_ts(w, id->dst_ts);
	write_mark(w, id->mark);
	w->write_uint32(w, id->if_id);
	return write_ifname(w, id->interface);
}

/**
 * Encode a policy for ADD_POLICY/DEL_POLICY; FALSE if not representable.
 */
static bool write_policy(bio_writer_t *w, kernel_ipsec_policy_id_t *id,
						 kernel_ipsec_manage_policy_t *data, size_t *id_len)
{
	uint8_t mode;

	if (id->label)
	{
		DBG1(DBG_KNL, "cvlan: security labels not supported");
		return FALSE;
	}
	if (!write_policy_id(w, id) || !wire_mode(data->sa->mode, &mode))
	{
		return FALSE;
	}
	*id_len = w->get_buf(w).len;
	w->write_uint8(w, data->type);
	w->write_uint8(w, data->prio);
	w->write_uint32(w, data->manual_prio);
	cvlan_write_host(w, data->src);
	cvlan_write_host(w, data->dst);
	w->write_uint8(w, mode);
	w->write_uint32(w, data->sa->reqid);
	w->write_uint8(w, data->sa->esp.use);
	w->write_uint32(w, ntohl(data->sa->esp.spi));
	w->write_uint8(w, data->sa->ah.use);
	w->write_uint32(w, ntohl(data->sa->ah.spi));
	w->write_uint16(w, data->sa->ipcomp.transform);
	w->write_uint16(w, ntohs(data->sa->ipcomp.cpi));
	return TRUE;
}

METHOD(kernel_ipsec_t, add_policy, status_t,
	private_cvlan_kernel_ipsec_t *this, kernel_ipsec_policy_id_t *id,
	kernel_ipsec_manage_policy_t *data)
{
	bio_writer_t *w;
	policy_entry_t *entry;
	size_t id_len;
	status_t status;

	w = bio_writer_create(256);
	if (!write_policy(w, id, data, &id_len))
	{
		w->destroy(w);
		return NOT_SUPPORTED;
	}
	INIT(entry,
		.body = w->extract_buf(w),
		.id_len = id_len,
	);
	w->destroy(w);

	DBG2(DBG_KNL, "cvlan: adding policy %R === %R %N, if_id %u",
		 id->src_ts, id->dst_ts, policy_dir_names, id->dir, id->if_id);
	status = cvlan_ipc->request(cvlan_ipc, CVLAN_ADD_POLICY, entry->body, NULL);
	if (status != SUCCESS)
	{
		DBG1(DBG_KNL, "cvlan: unable to add policy %R === %R %N (%N)",
			 id->src_ts, id->dst_ts, policy_dir_names, id->dir,
			 status_names, status);
		policy_entry_destroy(entry);
		return status;
	}
	this->mutex->lock(this->mutex);
	this->policies->insert_last(this->policies, entry);
	this->mutex->unlock(this->mutex);
	return SUCCESS;
}

/**
 * The data plane keeps use times per SA, not per policy (its QUERY_POLICY answers
 * NOT_SUPPORTED). Asking anyway cost every DPD two round trips per CHILD_SA (IN and FWD) before
 * charon falls back to query_sa (child_sa.c update_usetime), so the answer is given here.
 */
METHOD(kernel_ipsec_t, query_policy, status_t,
	private_cvlan_kernel_ipsec_t *this, kernel_ipsec_policy_id_t *id,
	kernel_ipsec_query_policy_t *data, time_t *use_time)
{
	return NOT_SUPPORTED;
}

METHOD(kernel_ipsec_t, del_policy, status_t,
	private_cvlan_kernel_ipsec_t *this, kernel_ipsec_policy_id_t *id,
	kernel_ipsec_manage_policy_t *data)
{
	enumerator_t *enumerator;
	bio_writer_t *w;
	policy_entry_t *entry, *found = NULL;
	chunk_t body, pid;
	size_t id_len;
	status_t status;

	w = bio_writer_create(256);
	if (!write_policy(w, id, data, &id_len))
	{
		w->destroy(w);
		return NOT_SUPPORTED;
	}
	body = w->get_buf(w);
	pid = chunk_create(body.ptr, id_len);

	/* installations of one policy id are counted: drop the latest */
	this->mutex->lock(this->mutex);
	enumerator = this->policies->create_enumerator(this->policies);
	while (enumerator->enumerate(enumerator, &entry))
	{
		if (entry->id_len == id_len &&
			chunk_equals(chunk_create(entry->body.ptr, id_len), pid))
		{
			found = entry;
		}
	}
	enumerator->destroy(enumerator);
	if (found)
	{
		this->policies->remove(this->policies, found, NULL);
		policy_entry_destroy(found);
	}
	this->mutex->unlock(this->mutex);

	status = cvlan_ipc->request(cvlan_ipc, CVLAN_DEL_POLICY, body, NULL);
	w->destroy(w);
	if (status != SUCCESS)
	{
		DBG1(DBG_KNL, "cvlan: unable to delete policy %R === %R %N (%N)",
			 id->src_ts, id->dst_ts, policy_dir_names, id->dir,
			 status_names, status);
	}
	return status;
}

METHOD(kernel_ipsec_t, flush_policies, status_t,
	private_cvlan_kernel_ipsec_t *this)
{
	this->mutex->lock(this->mutex);
	this->policies->destroy_function(this->policies,
									 (void*)policy_entry_destroy);
	this->policies = linked_list_create();
	this->mutex->unlock(this->mutex);
	return cvlan_ipc->request(cvlan_ipc, CVLAN_FLUSH_POLICIES, chunk_empty,
							  NULL);
}

METHOD(kernel_ipsec_t, bypass_socket, bool,
	private_cvlan_kernel_ipsec_t *this, int fd, int family)
{
	bio_writer_t *w;
	status_t status;

	/* charon's own sockets carry nothing the data plane would tunnel; the
	 * data plane is told so it can account for it */
	w = bio_writer_create(4);
	w->write_uint8(w, family == AF_INET6 ? 6 : 4);
	status = send_request(CVLAN_BYPASS_SOCKET, w, NULL);
	return status == SUCCESS;
}

METHOD(kernel_ipsec_t, enable_udp_decap, bool,
	private_cvlan_kernel_ipsec_t *this, int fd, int family, uint16_t port)
{
	bio_writer_t *w;
	status_t status;

	w = bio_writer_create(4);
	w->write_uint8(w, family == AF_INET6 ? 6 : 4);
	w->write_uint16(w, port);
	status = send_request(CVLAN_ENABLE_UDP_DECAP, w, NULL);
	return status == SUCCESS;
}

/**
 * Reinstall everything in a data plane that was just flushed. Runs in the
 * connection's reader thread before other requests pass.
 */
static bool resync(private_cvlan_kernel_ipsec_t *this)
{
	enumerator_t *enumerator;
	sa_entry_t *sa;
	policy_entry_t *policy;
	int sas = 0, policies = 0, failed = 0;

	this->mutex->lock(this->mutex);
	enumerator = this->sas->create_enumerator(this->sas);
	while (enumerator->enumerate(enumerator, NULL, &sa))
	{
		if (cvlan_ipc->request(cvlan_ipc, CVLAN_ADD_SA, sa->body,
							   NULL) == SUCCESS)
		{
			sas++;
		}
		else
		{
			DBG1(DBG_KNL, "cvlan: replay of SA with SPI %.8x failed",
				 ntohl(sa->spi));
			failed++;
		}
	}
	enumerator->destroy(enumerator);
	enumerator = this->policies->create_enumerator(this->policies);
	while (enumerator->enumerate(enumerator, &policy))
	{
		if (cvlan_ipc->request(cvlan_ipc, CVLAN_ADD_POLICY, policy->body,
							   NULL) == SUCCESS)
		{
			policies++;
		}
		else
		{
			failed++;
		}
	}
	enumerator->destroy(enumerator);
	this->mutex->unlock(this->mutex);
	DBG1(DBG_KNL, "cvlan: replayed %d SAs and %d policies, %d failed", sas,
		 policies, failed);
	return TRUE;
}

METHOD(kernel_ipsec_t, destroy, void,
	private_cvlan_kernel_ipsec_t *this)
{
	enumerator_t *enumerator;
	sa_entry_t *entry;

	cvlan_ipc->set_resync(cvlan_ipc, NULL, NULL);
	enumerator = this->sas->create_enumerator(this->sas);
	while (enumerator->enumerate(enumerator, NULL, &entry))
	{
		sa_entry_destroy(entry);
	}
	enumerator->destroy(enumerator);
	this->sas->destroy(this->sas);
	this->policies->destroy_function(this->policies,
									 (void*)policy_entry_destroy);
	this->mutex->destroy(this->mutex);
	free(this);
}

/*
 * See header.
 */
cvlan_kernel_ipsec_t *cvlan_kernel_ipsec_create()
{
	private_cvlan_kernel_ipsec_t *this;

	if (!cvlan_ipc)
	{
		return NULL;
	}
	INIT(this,
		.public = {
			.interface = {
				.get_features = _get_features,
				.get_spi = _get_spi,
				.get_cpi = _get_cpi,
				.add_sa = _add_sa,
				.update_sa = _update_sa,
				.query_sa = _query_sa,
				.del_sa = _del_sa,
				.flush_sas = _flush_sas,
				.add_policy = _add_policy,
				.query_policy = _query_policy,
				.del_policy = _del_policy,
				.flush_policies = _flush_policies,
				.bypass_socket = _bypass_socket,
				.enable_udp_decap = _enable_udp_decap,
				.destroy = _destroy,
			},
		},
		.sas = hashtable_create((hashtable_hash_t)sa_hash,
								(hashtable_equals_t)sa_equals, 32),
		.policies = linked_list_create(),
		.mutex = mutex_create(MUTEX_TYPE_DEFAULT),
	);
	if (lib->settings->get_bool(lib->settings,
						"%s.plugins.cvlan.require_udp_encap", FALSE, lib->ns))
	{	/* for data planes without a raw ESP socket */
		this->features |= KERNEL_REQUIRE_UDP_ENCAPSULATION;
	}

	cvlan_ipc->set_resync(cvlan_ipc, (cvlan_ipc_resync_cb_t)resync, this);
	return &this->public;
}
