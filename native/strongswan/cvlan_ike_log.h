/*
 * Copyright (C) 2026 cvlan-vrouter authors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

/**
 * @defgroup cvlan_ike_log cvlan_ike_log
 * @{ @ingroup cvlan
 */

#ifndef CVLAN_IKE_LOG_H_
#define CVLAN_IKE_LOG_H_

#include <bus/listeners/logger.h>

typedef struct cvlan_ike_log_t cvlan_ike_log_t;

/**
 * Logger of the IKE subsystem for the daemon: the lines charon's stderr logger
 * would write, on stdout, without the routine lines of liveness checks (a DPD
 * request sent, a NAT keep-alive sent). With 2000 idle tunnels and 30 s DPD
 * those were ~67 lines a second that charon formatted and wrote and the daemon
 * read only to discard.
 *
 * Enabled by charon.plugins.cvlan.ike_log_level (the IKE level the daemon
 * wants; charon's own stderr logger is then configured with ike = -1). Line
 * format and options are those of charon.filelog.stderr.
 */
struct cvlan_ike_log_t {

	/**
	 * Implements logger_t interface.
	 */
	logger_t logger;

	/**
	 * Destroy the logger.
	 */
	void (*destroy)(cvlan_ike_log_t *this);
};

/**
 * Create the logger from the settings.
 *
 * @return			the logger, NULL if not enabled
 */
cvlan_ike_log_t *cvlan_ike_log_create();

#endif /** CVLAN_IKE_LOG_H_ @}*/
