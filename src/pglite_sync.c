/*
 * pglite_sync.c
 *	  Module load: settings, and when preloaded the shared memory, the
 *	  launcher, libcurl and the utility hook (dbhook.c).
 */
#include "pglite_sync.h"

#ifndef __PGLITE__
#include <curl/curl.h>
#endif

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/guc.h"

#include "json.h"
#include "ps_alloc.h"

PG_MODULE_MAGIC;

bool		ps_debug = false;
int			ps_backoff_base_ms = 1000;
int			ps_backoff_max_ms = 32000;
int			ps_http_timeout_ms = 60000;
int			ps_max_subscriptions = 32;
int			ps_max_response_size = 256 * 1024;	/* kB */
char	   *ps_allowed_hosts = NULL;
char	   *ps_ca_file = NULL;
bool		ps_stream_snapshot = true;

void		_PG_init(void);

#ifndef __PGLITE__
static shmem_request_hook_type prev_shmem_request_hook = NULL;

static void
ps_shmem_request_hook(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	ps_shmem_request();
}
#endif

static void
define_gucs(bool preloading)
{
	DefineCustomBoolVariable("pglite_sync.debug",
							 "Logs every request, response and applied batch of every subscription.",
							 NULL, &ps_debug, false, PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("pglite_sync.backoff_base",
							"First retry delay after a failed request (full-jitter exponential backoff).",
							NULL, &ps_backoff_base_ms, 1000, 1, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pglite_sync.backoff_max",
							"Longest retry delay; failures that retrying alone will not fix are retried at this interval.",
							NULL, &ps_backoff_max_ms, 32000, 1, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pglite_sync.http_timeout",
							"Timeout of a live long-poll, and the longest a catch-up request may go without receiving data.",
							"Must exceed the sync service's long-poll timeout (20 s by default).",
							&ps_http_timeout_ms, 60000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pglite_sync.max_response_size",
							"Largest response body accepted from the sync service; 0 means no limit.",
							NULL, &ps_max_response_size, 256 * 1024, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomStringVariable("pglite_sync.allowed_hosts",
							   "Comma-separated host names that shape URLs may use; empty allows any host.",
							   NULL, &ps_allowed_hosts, "", PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("pglite_sync.tls_ca_file",
							   "File of trusted certificate authorities for https shape URLs; empty uses the system store.",
							   NULL, &ps_ca_file, "", PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomBoolVariable("pglite_sync.stream_snapshot",
							 "Loads each page of an initial snapshot as it arrives, in one transaction open until the snapshot is complete.",
							 "Off: the snapshot is spooled whole and loaded at its end, with no transaction open while it downloads.",
							 &ps_stream_snapshot, true, PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	if (preloading)
		DefineCustomIntVariable("pglite_sync.max_subscriptions",
								"Maximum number of subscriptions running at once in the whole cluster.",
								"Each running subscription also uses one of max_worker_processes.",
								&ps_max_subscriptions, 32, 1, 10000,
								PGC_POSTMASTER, 0, NULL, NULL, NULL);
	MarkGUCPrefixReserved("pglite_sync");
}

void
_PG_init(void)
{
	bool		preloading = process_shared_preload_libraries_in_progress;

	define_gucs(preloading);

	/* the pure C parts and jansson allocate through the same hooks */
	json_set_alloc_funcs(ps_malloc, ps_free);

#ifndef __PGLITE__
	if (!preloading || IsBinaryUpgrade)
		return;

	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR, (errmsg("pglite_sync: could not initialize libcurl")));

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = ps_shmem_request_hook;
	ps_shmem_startup();

	ps_install_utility_hook();

	ps_register_xact_callbacks();
	ps_register_launcher();
#endif
}
