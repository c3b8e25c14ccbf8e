/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The projector of a database: a background worker that attaches to its
 *	  slot, decodes, applies each decoded batch to the live projections,
 *	  steps the projections that catch up, and sleeps on its latch.  Every
 *	  transaction it runs goes through projector_xact_begin/end.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/pmsignal.h"
#include "storage/proc.h"

#include "es.h"
#include "projector/projector.h"

List	   *active_before = NIL;	/* names active in the last batch */
char		slot_name[NAMEDATALEN];
static bool woken = true;		/* the latch was set: look at the catalog */
static bool catching_pending = false;	/* a catch-up has more to read */
bool		holding_any = false;	/* a paused or failed projection holds WAL */
static XLogRecPtr last_batch_end = InvalidXLogRecPtr;
XLogRecPtr	active_floor = InvalidXLogRecPtr;	/* lowest running checkpoint */
static TimestampTz last_batch_at = 0;
ProjectorDb *my_db = NULL;

/* ------------------------------------------------------------------------
 * The projector's transactions
 * ------------------------------------------------------------------------
 */

/* pending table statistics not flushed since (0: none) */
static TimestampTz stats_pending_since = 0;

/*
 * Every transaction of the projector that runs es's SQL or handlers, as in
 * worker_spi and the logical replication apply worker: a fresh statement
 * timestamp first (now(), statement_timestamp() and the times es records
 * are those of this transaction, not of the projector's start), its
 * activity in pg_stat_activity, and es_internal_begin (es's settings).
 * Returns the GUC nest level for projector_xact_end.
 */
int
projector_xact_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, activity);
	return es_internal_begin();
}

/*
 * Commit, then report the table statistics (autovacuum needs them for the
 * read tables the handlers write), at most once a second like a backend;
 * the main loop flushes what is left pending when idle (stats_flush_idle).
 */
void
projector_xact_end(int guc_level)
{
	es_internal_end(guc_level);
	CommitTransactionCommand();
	projector_progress();
	if (pgstat_report_stat(false) > 0)
	{
		if (stats_pending_since == 0)
			stats_pending_since = GetCurrentTimestamp();
	}
	else
		stats_pending_since = 0;
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Between transactions: flush statistics left pending by the rate limit
 * for a second or more (pgstat_report_stat(false) would not: it measures
 * from the last commit's timestamp).
 */
static void
stats_flush_idle(void)
{
	if (stats_pending_since != 0 &&
		TimestampDifferenceExceeds(stats_pending_since, GetCurrentTimestamp(), 1000))
	{
		(void) pgstat_report_stat(true);
		stats_pending_since = 0;
	}
}

/* ------------------------------------------------------------------------
 * The projector's main loop
 * ------------------------------------------------------------------------
 */

static void
projector_exit(int code, Datum arg)
{
	TimestampTz later = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 5000);

	SpinLockAcquire(&projector->mutex);
	if (my_db != NULL && my_db->pid == MyProcPid)
	{
		my_db->pid = 0;
		my_db->latch = NULL;
		if (code != 0 && !my_db->dropping)
			(void) request_start(my_db, later);	/* the launcher polls */
	}
	SpinLockRelease(&projector->mutex);
}

/* Leave when there is nothing to project, unless a wake came meanwhile */
static bool
projector_may_leave(void)
{
	bool		leave;

	SpinLockAcquire(&projector->mutex);
	leave = !my_db->start_requested;
	my_db->start_requested = false;
	if (leave)
	{
		my_db->pid = 0;
		my_db->latch = NULL;
	}
	SpinLockRelease(&projector->mutex);
	return leave;
}

/*
 * The projector's own settings, whatever ALTER DATABASE ... SET (which the
 * database's owner may run, superuser or not) or ALTER ROLE ... SET put in
 * place when it connected: all of them at start ("at_start"), who it is
 * and search_path again before every batch (whose transactions also run
 * under es_internal_begin).
 *
 * - Who it is: the bootstrap superuser it connected as.  A database's
 *   "role" or "session_authorization" setting applies to a superuser's
 *   session: it would have the projector create the publication, and run
 *   its statements, as that role.
 * - search_path: ES_SEARCH_PATH.  Its value at PGC_S_SESSION, like a SET;
 *   also its reset value (what RESET and SET ... TO DEFAULT give inside a
 *   handler, the database's path otherwise), which guc.c sets only from a
 *   source up to PGC_S_OVERRIDE.  Neither keeps a function's own SET
 *   search_path clause (PGC_S_SESSION, the highest source, with
 *   GUC_ACTION_SAVE) from applying to that function; es_usercode_begin
 *   pins the path again for each handler call.
 * - default_transaction_isolation and default_transaction_read_only: the
 *   snapshots of the batches and catch-ups need read committed, and writes.
 * - synchronous_commit = local: a checkpoint must be flushed before the
 *   slot is confirmed past it.
 * - session_replication_role = origin: in replica mode the triggers and
 *   foreign keys of es.projections, es.projection_errors and the read
 *   tables would not fire (it needs a superuser's grant, but is cheap).
 * - lock_timeout = 0 (the default): the batches wait for the admin
 *   functions' row locks, and must not fail on them in a loop.
 * - application_name: "es projector", in pg_stat_activity and for
 *   handlers.
 *
 * The other settings a database owner may set (DateStyle, TimeZone,
 * work_mem, the planner's...) change no name or identity the projector's
 * statements resolve to: its statements name every object with its
 * schema and convert no value through text that a style would change.
 * They apply to the handlers, as in every session of the database.
 */
static void
projector_pin_settings(bool at_start)
{
	if (at_start)
	{
		SetConfigOption("default_transaction_isolation", "read committed",
						PGC_SUSET, PGC_S_OVERRIDE);
		SetConfigOption("default_transaction_read_only", "off",
						PGC_SUSET, PGC_S_OVERRIDE);
		SetConfigOption("synchronous_commit", "local", PGC_SUSET, PGC_S_OVERRIDE);
		SetConfigOption("session_replication_role", "origin", PGC_SUSET, PGC_S_OVERRIDE);
		/* a session's value (above the database's and roles'): a handler's
		 * owner's lock_timeout and the function's own SET clause go on it */
		SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_SESSION);
		SetConfigOption("application_name", "es projector", PGC_SUSET, PGC_S_OVERRIDE);
	}

	if (at_start ||
		GetUserId() != GetAuthenticatedUserId() ||
		GetSessionUserId() != GetAuthenticatedUserId())
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		if (GetUserId() != GetAuthenticatedUserId() ||
			GetSessionUserId() != GetAuthenticatedUserId())
		{
			SetConfigOption("session_authorization",
							GetUserNameFromId(GetAuthenticatedUserId(), false),
							PGC_SUSET, PGC_S_OVERRIDE);
			SetConfigOption("role", "none", PGC_SUSET, PGC_S_OVERRIDE);
		}
		if (GetUserId() != GetAuthenticatedUserId() || !superuser())
			ereport(FATAL,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("es projector: could not run as the bootstrap superuser")));
		CommitTransactionCommand();
	}

	if (namespace_search_path == NULL ||
		strcmp(namespace_search_path, ES_SEARCH_PATH) != 0)
	{
		SetConfigOption("search_path", ES_SEARCH_PATH, PGC_SUSET, PGC_S_OVERRIDE);
		SetConfigOption("search_path", ES_SEARCH_PATH, PGC_SUSET, PGC_S_SESSION);
	}
}

void
es_projector_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	XLogRecPtr	start_lsn;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	start_lsn = GetXLogInsertRecPtr();
	SpinLockAcquire(&projector->mutex);
	my_db = projector_db(dboid, true, start_lsn);
	if (my_db == NULL || my_db->dropping || (my_db->pid != 0 && my_db->pid != MyProcPid))
	{
		bool		full = my_db == NULL;

		my_db = NULL;
		SpinLockRelease(&projector->mutex);
		if (full)
			projector_full_warning(dboid);
		proc_exit(0);
	}
	my_db->pid = MyProcPid;
	my_db->latch = MyLatch;
	my_db->start_requested = false;
	/* what committed before we run counts as appended */
	my_db->last_append_end = Max(my_db->last_append_end, start_lsn);
	SpinLockRelease(&projector->mutex);
	before_shmem_exit(projector_exit, (Datum) 0);

	/* the server's values, before the database's and the role's apply */
	server_statement_timeout = StatementTimeout;
	server_lock_timeout = LockTimeout;
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	/* whatever the database's (or the role's) settings say */
	projector_pin_settings(true);
	snprintf(slot_name, sizeof(slot_name), "es_projector_%u", dboid);
	decoding_init();

	for (;;)
	{
		XLogRecPtr	decode_end;
		List	   *catching = NIL;
		BatchResult r;
		bool		busy = false;
		ListCell   *lc;
		TimestampTz now;
		XLogRecPtr	target;

		CHECK_FOR_INTERRUPTS();
		if (!PostmasterIsAlive())
			proc_exit(1);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		stats_flush_idle();
		/* set while we were busy: a wake-up all the same */
		if (MyLatch->is_set)
			woken = true;
		ResetLatch(MyLatch);
		/* a handler cannot change them for good, but check */
		projector_pin_settings(false);

		if (decoding == NULL)
		{
			AttachResult ar;

			/* waiting for a publication or slot of somebody else's to go */
			now = GetCurrentTimestamp();
			if (attach_retry_at > now)
			{
				(void) WaitLatch(MyLatch,
								 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 Max(TimestampDifferenceMilliseconds(now, attach_retry_at), 1),
								 PG_WAIT_EXTENSION);
				continue;
			}
			ar = projector_attach();
			if (ar == ATTACH_WAIT)
				continue;
			if (ar == ATTACH_NOTHING)
			{
				projector_detach();
				if (projector_may_leave())
					proc_exit(0);
				continue;
			}
		}

		decode_end = decoding_read();
		now = GetCurrentTimestamp();
		SpinLockAcquire(&projector->mutex);
		target = my_db->last_append_end;
		SpinLockRelease(&projector->mutex);

		/*
		 * A batch locks the projections' rows, which takes a transaction id
		 * and writes WAL: only when there is something to do.  A wake-up
		 * (an append's commit, a change by an administrator), decoded
		 * events, a catch-up in progress, or much WAL without events (to
		 * let the slot go), or a paused projection to report now and then.
		 */
		if (decoded_xacts != NIL || woken || catching_pending ||
			decode_end - last_batch_end > RAISE_EVERY_BYTES ||
			/* a waiter wants a checkpoint past the last append */
			(!XLogRecPtrIsInvalid(active_floor) && active_floor < target &&
			 decode_end >= target) ||
			(holding_any && TimestampDifferenceExceeds(last_batch_at, now, 60 * 1000)))
		{
			r = run_batch(decode_end, &catching);
			decoding_reset();
			if (r == BATCH_NOTHING)
			{
				projector_detach();
				if (projector_may_leave())
					proc_exit(0);
				woken = true;
				continue;
			}
			if (r == BATCH_REWIND)
			{
				decoding_stop();
				decoding_start();
				woken = true;
				continue;
			}
			last_batch_end = decode_end;
			last_batch_at = now;
			processed_upto = decode_end;

			foreach(lc, catching)
				busy |= catchup_step(lfirst(lc));
			list_free_deep(catching);
			catching_pending = busy;
		}
		processed_upto = decode_end;

		woken = false;
		if (!busy && decoding->reader->EndRecPtr >= GetFlushRecPtr(NULL))
		{
			int			rc = WaitLatch(MyLatch,
									   WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
									   1000L, PG_WAIT_EXTENSION);

			woken = (rc & WL_LATCH_SET) != 0;
		}
	}
}
