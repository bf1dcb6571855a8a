/*
 * Copyright (C) 2026 cvlan-vrouter authors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "cvlan_alerts.h"

#include <daemon.h>

typedef struct private_cvlan_alerts_t private_cvlan_alerts_t;

/**
 * Private data of the listener.
 */
struct private_cvlan_alerts_t {

	/**
	 * Public interface.
	 */
	cvlan_alerts_t public;
};

METHOD(listener_t, alert, bool,
	private_cvlan_alerts_t *this, ike_sa_t *ike_sa, alert_t alert,
	va_list args)
{
	if (alert == ALERT_LOCAL_AUTH_FAILED && ike_sa)
	{
		switch (ike_sa->get_state(ike_sa))
		{
			case IKE_ESTABLISHED:
			case IKE_REKEYING:
			case IKE_REKEYED:
				/* ike_delete raises this for an INFORMATIONAL carrying
				 * AUTHENTICATION_FAILED after the IKE_SA was established
				 * (the initiator refused our AUTH); every other raiser runs
				 * while the IKE_SA is connecting and logs its own reason.
				 * The bus prefixes the line with the IKE_SA's <name|id>. */
				DBG1(DBG_IKE, "received a late AUTHENTICATION_FAILED: "
					 "the peer refused our authentication");
				break;
			default:
				break;
		}
	}
	return TRUE;
}

METHOD(cvlan_alerts_t, destroy, void,
	private_cvlan_alerts_t *this)
{
	free(this);
}

/*
 * See header.
 */
cvlan_alerts_t *cvlan_alerts_create()
{
	private_cvlan_alerts_t *this;

	INIT(this,
		.public = {
			.listener = {
				.alert = _alert,
			},
			.destroy = _destroy,
		},
	);

	return &this->public;
}
