/*
 * Copyright (C) 2026 cvlan-vrouter authors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "cvlan_ike_log.h"

#include <daemon.h>
#include <bus/listeners/file_logger.h>

#include <stdio.h>

typedef struct private_cvlan_ike_log_t private_cvlan_ike_log_t;

/**
 * Private data of the logger.
 */
struct private_cvlan_ike_log_t {

	/**
	 * Public interface.
	 */
	cvlan_ike_log_t public;

	/**
	 * charon's own file logger on stdout: same line format as on stderr.
	 */
	file_logger_t *out;

	/**
	 * Level of the IKE subsystem.
	 */
	level_t level;
};

/**
 * Prefix of the one routine NAT keep-alive line (ike_sa.c send_keepalive).
 */
#define KEEPALIVE_PREFIX "sending keep alive to "

/**
 * Whether a message is one of the routine lines of a liveness check: it says
 * nothing about a tunnel's state (a dead peer shows as retransmits, then the
 * IKE_SA's deletion, each with its own line).
 */
static bool is_liveness(const char *message)
{
	return streq(message, "sending DPD request") ||
		   strpfx(message, KEEPALIVE_PREFIX);
}

METHOD(logger_t, log_, void,
	private_cvlan_ike_log_t *this, debug_t group, level_t level, int thread,
	ike_sa_t *ike_sa, const char *message)
{
	if (group != DBG_IKE || (level >= LEVEL_CTRL && is_liveness(message)))
	{
		return;
	}
	this->out->logger.log(&this->out->logger, group, level, thread, ike_sa,
						  message);
}

METHOD(logger_t, get_level, level_t,
	private_cvlan_ike_log_t *this, debug_t group)
{
	return group == DBG_IKE ? this->level : LEVEL_SILENT;
}

METHOD(cvlan_ike_log_t, destroy, void,
	private_cvlan_ike_log_t *this)
{
	this->out->destroy(this->out);
	free(this);
}

/*
 * See header.
 */
cvlan_ike_log_t *cvlan_ike_log_create()
{
	private_cvlan_ike_log_t *this;
	int level;

	level = lib->settings->get_int(lib->settings,
						"%s.plugins.cvlan.ike_log_level", LEVEL_SILENT, lib->ns);
	if (level <= LEVEL_SILENT)
	{
		return NULL;
	}
	if (level > LEVEL_DIAG)
	{	/* conf.ts caps charon's levels at 2 (no key material) */
		level = LEVEL_DIAG;
	}

	INIT(this,
		.public = {
			.logger = {
				.log = _log_,
				.get_level = _get_level,
			},
			.destroy = _destroy,
		},
		.out = file_logger_create("stdout"),
		.level = level,
	);

	this->out->set_options(this->out,
		lib->settings->get_str(lib->settings,
						"%s.filelog.stderr.time_format", NULL, lib->ns),
		lib->settings->get_bool(lib->settings,
						"%s.filelog.stderr.time_add_ms", FALSE, lib->ns),
		lib->settings->get_bool(lib->settings,
						"%s.filelog.stderr.ike_name", FALSE, lib->ns),
		lib->settings->get_bool(lib->settings,
						"%s.filelog.stderr.log_level", FALSE, lib->ns));
	this->out->set_level(this->out, DBG_ANY, LEVEL_SILENT);
	this->out->set_level(this->out, DBG_IKE, level);
	/* stdout into a pipe is fully buffered, and charon's logger sets line
	 * buffering only on files it opens: one write per line, written at once */
	setlinebuf(stdout);
	this->out->open(this->out, TRUE, FALSE);

	return &this->public;
}
