/*
 * Copyright (C) 2026 cvlan-vrouter authors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "cvlan_plugin.h"
#include "cvlan_alerts.h"
#include "cvlan_ike_log.h"
#include "cvlan_ipc.h"
#include "cvlan_kernel_ipsec.h"
#include "cvlan_socket.h"

#include <daemon.h>

typedef struct private_cvlan_plugin_t private_cvlan_plugin_t;

/**
 * Private data of the plugin.
 */
struct private_cvlan_plugin_t {

	/**
	 * Public interface.
	 */
	cvlan_plugin_t public;

	/**
	 * Alerts named in log lines, registered on the bus while loaded.
	 */
	cvlan_alerts_t *alerts;

	/**
	 * The IKE subsystem's lines for the daemon, NULL unless configured.
	 */
	cvlan_ike_log_t *ike_log;
};

METHOD(plugin_t, get_name, char*,
	private_cvlan_plugin_t *this)
{
	return "cvlan";
}

/**
 * Register or unregister the alert listener.
 */
static bool register_alerts(private_cvlan_plugin_t *this,
							plugin_feature_t *feature, bool reg, void *data)
{
	if (reg)
	{
		charon->bus->add_listener(charon->bus, &this->alerts->listener);
	}
	else
	{
		charon->bus->remove_listener(charon->bus, &this->alerts->listener);
	}
	return TRUE;
}

/**
 * Register or unregister the IKE logger, if configured.
 */
static bool register_ike_log(private_cvlan_plugin_t *this,
							 plugin_feature_t *feature, bool reg, void *data)
{
	if (reg)
	{
		this->ike_log = cvlan_ike_log_create();
		if (this->ike_log)
		{
			charon->bus->add_logger(charon->bus, &this->ike_log->logger);
		}
	}
	else if (this->ike_log)
	{
		charon->bus->remove_logger(charon->bus, &this->ike_log->logger);
		this->ike_log->destroy(this->ike_log);
		this->ike_log = NULL;
	}
	return TRUE;
}

METHOD(plugin_t, get_features, int,
	private_cvlan_plugin_t *this, plugin_feature_t *features[])
{
	static plugin_feature_t f[] = {
		PLUGIN_CALLBACK(kernel_ipsec_register, cvlan_kernel_ipsec_create),
			PLUGIN_PROVIDE(CUSTOM, "kernel-ipsec"),
		PLUGIN_CALLBACK(socket_register, cvlan_socket_create),
			PLUGIN_PROVIDE(CUSTOM, "socket"),
		PLUGIN_CALLBACK((plugin_feature_callback_t)register_alerts, NULL),
			PLUGIN_PROVIDE(CUSTOM, "cvlan-alerts"),
		PLUGIN_CALLBACK((plugin_feature_callback_t)register_ike_log, NULL),
			PLUGIN_PROVIDE(CUSTOM, "cvlan-ike-log"),
	};
	*features = f;
	return countof(f);
}

METHOD(plugin_t, destroy, void,
	private_cvlan_plugin_t *this)
{
	this->alerts->destroy(this->alerts);
	DESTROY_IF(cvlan_ipc);
	cvlan_ipc = NULL;
	free(this);
}

/*
 * See header.
 */
plugin_t *cvlan_plugin_create()
{
	private_cvlan_plugin_t *this;

	if (cvlan_ipc)
	{	/* the objects share one global connection */
		DBG1(DBG_KNL, "cvlan: plugin already loaded");
		return NULL;
	}
	cvlan_ipc = cvlan_ipc_create();
	if (!cvlan_ipc)
	{
		return NULL;
	}

	INIT(this,
		.public = {
			.plugin = {
				.get_name = _get_name,
				.get_features = _get_features,
				.destroy = _destroy,
			},
		},
		.alerts = cvlan_alerts_create(),
	);

	return &this->public.plugin;
}
