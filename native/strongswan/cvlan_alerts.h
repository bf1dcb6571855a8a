/*
 * Copyright (C) 2026 cvlan-vrouter authors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

/**
 * @defgroup cvlan_alerts cvlan_alerts
 * @{ @ingroup cvlan
 */

#ifndef CVLAN_ALERTS_H_
#define CVLAN_ALERTS_H_

#include <bus/listeners/listener.h>

typedef struct cvlan_alerts_t cvlan_alerts_t;

/**
 * Bus listener that names, in one level-1 IKE line, the alerts the daemon
 * otherwise finds only in per-message ENC lines: a late AUTHENTICATION_FAILED
 * on an established IKE_SA. With it, the ENC group can stay off below the
 * daemon's trace level (four of the five lines of every DPD exchange).
 */
struct cvlan_alerts_t {

	/**
	 * Implements listener_t interface.
	 */
	listener_t listener;

	/**
	 * Destroy the listener.
	 */
	void (*destroy)(cvlan_alerts_t *this);
};

/**
 * Create the listener.
 */
cvlan_alerts_t *cvlan_alerts_create();

#endif /** CVLAN_ALERTS_H_ @}*/
