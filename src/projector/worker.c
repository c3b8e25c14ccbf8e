/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The projector of a database: a background worker that attaches to its
 *	  slot, decodes, logs each decoded batch for the projection workers
 *	  (applier.c), starts them, confirms its slot up to the oldest
 *	  checkpoint, and sleeps on its latch.  Every transaction it and the
 *	  workers run goes through projector_xact_begin/end, which also keep a
 *	  worker's search_path between its transactions (rest_on).
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/dbcommands.h"
#include "commands/vacuum.h"
#include "nodes/makefuncs.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/bufmgr.h"
#include "storage/ipc.h"
#include "storage/pmsignal.h"
#include "storage/proc.h"

#include "storage/lmgr.h"
#include "storage/procarray.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "es.h"
#include "projector/projector.h"

char		slot_name[NAMEDATALEN];
ProjectorDb *my_db = NULL;
char	   *my_db_name = NULL;	/* its name, read once at start */
static bool woken = true;		/* the latch was set: look at the catalog */
static bool holding_any = false;	/* a paused or failed projection holds WAL */
static List *holding_logged = NIL;	/* names said to hold WAL */
static TimestampTz holding_logged_at = 0;
static XLogRecPtr last_batch_end = InvalidXLogRecPtr;
static TimestampTz last_batch_at = 0;
static TimestampTz slot_saved_at = 0;
static XLogRecPtr trim_upto = InvalidXLogRecPtr;	/* batch files to remove */
static TimestampTz last_look_at = 0;	/* the last look at the projections */
static bool looked_any = false; /* and it found some */
static bool look_owed = false;	/* a batch was logged since the last look */
/* the projection workers this projector started, by slot */
static BackgroundWorkerHandle *worker_handles[MAX_PROJECTION_WORKERS];

/* ------------------------------------------------------------------------
 * The projector's transactions
 * ------------------------------------------------------------------------
 */

/* pending table statistics not flushed since (0: none) */
static TimestampTz stats_pending_since = 0;

/*
 * The search_path between transactions.  On PostgreSQL 15, ending a GUC
 * nest level walks every setting (AtEOXact_GUC) as soon as any of them has
 * a saved value in the transaction.  A handler's path saved for a unit
 * (es_usercode_run_begin) is such a value: each call's rollback
 * (es_usercode_end) then walked them all, about 7% of a live unit's time.
 * So a projection worker keeps the path of the handler it ran last as its
 * session's value between transactions ("at rest"), and ends the
 * transaction's es_internal_begin level during a unit's handler calls
 * (projector_user_begin/end, around apply_unit): a handler with that path
 * then needs no saved value at all.  es's own statements still run under
 * es_internal_begin: every transaction starts with it, and it is started
 * again once the calls are done.  In between (see apply_unit) es runs only
 * C code that runs no statement and resolves no name, as it does between
 * the calls of a unit.
 */
static int	xact_guc_level = 0; /* projector_xact_begin's, while it runs */
static char *rest_path = NULL;	/* the session's search_path (NULL: es's) */
static char *rest_next = NULL;	/* the one to take after this transaction */

/*
 * Make "path" (NULL: ES_SEARCH_PATH) the session's search_path, outside a
 * transaction; also what projector_pin_settings puts back (rest_path).
 */
static void
rest_on(const char *path)
{
	const char *want = path ? path : ES_SEARCH_PATH;
	char	   *keep;

	Assert(!IsTransactionState());
	if (namespace_search_path != NULL && strcmp(namespace_search_path, want) == 0)
		return;
	keep = path ? MemoryContextStrdup(TopMemoryContext, path) : NULL;
	/* a path guc.c refuses (a row written by hand): es's, and a WARNING */
	if (set_config_option("search_path", want, PGC_SUSET, PGC_S_SESSION,
						  GUC_ACTION_SET, true, WARNING, false) <= 0)
	{
		SetConfigOption("search_path", ES_SEARCH_PATH, PGC_SUSET, PGC_S_SESSION);
		if (keep != NULL)
			pfree(keep);
		keep = NULL;
	}
	if (rest_path != NULL)
		pfree(rest_path);
	rest_path = keep;
}

/*
 * Before a unit's handler calls, at the transaction's top level: end its
 * es_internal_begin level, so that "search_path" (the handler's, NULL for
 * es's) needs no saved value when it is the one at rest.  Returns whether
 * the level was ended, for projector_user_end.  apply_unit's callers open
 * no setting level of their own above the transaction's (that level is the
 * innermost here); in a subtransaction (batch_failing_event) nothing is
 * ended, and the handler's path is saved for the unit as before.
 */
bool
projector_user_begin(const char *search_path)
{
	const char *want = search_path ? search_path : ES_SEARCH_PATH;

	if (rest_next == NULL || strcmp(rest_next, want) != 0)
	{
		if (rest_next != NULL)
			pfree(rest_next);
		rest_next = MemoryContextStrdup(TopMemoryContext, want);
	}
	if (xact_guc_level == 0 || GetCurrentTransactionNestLevel() != 1)
		return false;
	es_internal_end(xact_guc_level);
	return true;
}

/* The handler calls are done: es's settings again */
void
projector_user_end(bool ended)
{
	if (ended)
	{
		int			level PG_USED_FOR_ASSERTS_ONLY = es_internal_begin();

		Assert(level == xact_guc_level);
	}
}

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
	xact_guc_level = es_internal_begin();
	return xact_guc_level;
}

/*
 * Commit, then report the table statistics (autovacuum needs them for the
 * read tables the handlers write), at most once a second like a backend;
 * the main loop flushes what is left pending when idle (stats_flush_idle).
 */
void
projector_xact_end(int guc_level)
{
	/*
	 * The commit undoes es_internal_begin's level (a saved value is
	 * restored at commit too), after the work done at commit, which thus
	 * still runs with es's search_path, not the one at rest.
	 */
	(void) guc_level;
	xact_guc_level = 0;
	CommitTransactionCommand();
	rest_on(rest_next);
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
void
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
 * A decoded batch
 * ------------------------------------------------------------------------
 */

/* Paused or failed live projections hold WAL back: say so, now and then */
static void
log_holding(List *aps)
{
	List	   *holding = NIL;
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();
	bool		again = TimestampDifferenceExceeds(holding_logged_at, now,
												   HOLD_LOG_INTERVAL_MS);
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	foreach(lc, aps)
	{
		AsyncProjection *ap = lfirst(lc);

		if (!is_live(ap) || is_active(ap))
			continue;
		holding = lappend(holding, pstrdup(ap->p->name));
		if (again || !name_in(holding_logged, ap->p->name))
			ereport(WARNING,
					(errmsg("es projector: %s projection \"%s\" holds back %llu bytes of WAL",
							ap->p->paused ? "paused" : "failed", ap->p->name,
							(unsigned long long) (GetXLogInsertRecPtr() - ap->applied_lsn)),
					 errhint("Resume it with es.resume_projection('%s') or drop it.", ap->p->name)));
	}
	if (again)
		holding_logged_at = now;
	holding_any = holding != NIL;
	list_free_deep(holding_logged);
	holding_logged = holding;
	MemoryContextSwitchTo(old);
}

/*
 * How far the slot may be confirmed at most, read before the snapshot
 * (see switch_begin): what the workers may already read, and no switch
 * to live in flight.
 */
static XLogRecPtr
confirm_bound(XLogRecPtr decode_end)
{
	XLogRecPtr	bound = decode_end;
	int			i;

	SpinLockAcquire(&projector->mutex);
	bound = Min(bound, my_db->decoded_upto);
	for (i = 0; i < MAX_PROJECTION_WORKERS; i++)
		if (!XLogRecPtrIsInvalid(my_db->workers[i].switching_at))
			bound = Min(bound, my_db->workers[i].switching_at);
	SpinLockRelease(&projector->mutex);
	return bound;
}

/*
 * The oldest checkpoint of a live projection (paused and failed ones
 * included: they keep what they have not applied), below "bound"; counts
 * the active projections in *active.  A live projection behind the slot
 * (moved by hand) stops.  In a transaction.
 */
static XLogRecPtr
oldest_checkpoint(List *aps, XLogRecPtr bound, int *active)
{
	ListCell   *lc;

	*active = 0;
	foreach(lc, aps)
	{
		AsyncProjection *ap = lfirst(lc);

		if (is_active(ap))
			(*active)++;
		if (!is_live(ap))
			continue;
		if (is_active(ap) && ap->applied_lsn < MyReplicationSlot->data.confirmed_flush)
		{
			/* cannot happen unless the slot was moved by hand */
			ap->stopped = true;
			ap->error_position = ap->last_position;
			ap->error_message = pstrdup("the replication slot was advanced past this projection's checkpoint; rebuild it");
			save_checkpoint(ap, false, false);
			ereport(WARNING,
					(errmsg("es projector: projection \"%s\" missed WAL that the slot no longer has",
							ap->p->name),
					 errhint("Rebuild it with es.rebuild_projection('%s').", ap->p->name)));
			continue;
		}
		bound = Min(bound, ap->applied_lsn);
	}
	return bound;
}

/*
 * Confirm the slot up to "confirm".  PostgreSQL writes a slot's confirmed
 * position to disk only now and then: save it every few seconds, so that
 * a restart after a crash does not decode (and skip) much WAL again.
 */
static void
slot_confirm(XLogRecPtr confirm)
{
	TimestampTz now;

	if (XLogRecPtrIsInvalid(confirm) || confirm <= MyReplicationSlot->data.confirmed_flush)
		return;
	LogicalConfirmReceivedLocation(confirm);
	now = GetCurrentTimestamp();
	if (TimestampDifferenceExceeds(slot_saved_at, now, 5000))
	{
		ReplicationSlotMarkDirty();
		ReplicationSlotSave();
		slot_saved_at = now;
	}
}

/*
 * Log the decoded batch (possibly empty) for the projection workers
 * (decode.c), then confirm the slot up to the oldest checkpoint of a live
 * projection, and remove the logged batches every live projection has
 * applied.  Neither goes past a switch to live in flight, nor past what
 * was logged before the look at the checkpoints (see switch_begin).
 *
 * The look at the projections (their checkpoints, how many are active)
 * is taken at most every LOOK_EVERY_MS while there are some: under a
 * steady stream of appends the projector logs hundreds of batches a
 * second, and reading es.projections for each (whose rows every unit
 * updates, so that it spans many pages until a VACUUM) cost it more than
 * decoding.  A batch between two looks is only logged and announced: the
 * slot and the removal of logged batches wait for the next look, which
 * the main loop takes LOOK_EVERY_MS later if nothing else comes.
 */
static BatchResult
decoder_batch(XLogRecPtr decode_end)
{
	MemoryContext batch_cxt = AllocSetContextCreate(TopMemoryContext, "es projector batch",
													ALLOCSET_DEFAULT_SIZES);
	List	   *aps = NIL;
	ListCell   *lc;
	XLogRecPtr	confirm = confirm_bound(decode_end);
	XLogRecPtr	logged = InvalidXLogRecPtr;
	XLogRecPtr	before = InvalidXLogRecPtr;
	int			active = 0;
	int			guc_level;
	bool		ready = false;
	bool		look = !looked_any ||
		TimestampDifferenceExceeds(last_look_at, GetCurrentTimestamp(), LOOK_EVERY_MS);

	guc_level = projector_xact_begin("decoding");
	MemoryContextSwitchTo(batch_cxt);

	/* the workers' snapshots must see the transactions logged below */
	foreach(lc, decoded_xacts)
	{
		DecodedXact *x = lfirst(lc);
		TransactionId xid = XidFromFullTransactionId(x->fxid);

		if (TransactionIdIsInProgress(xid))
			XactLockTableWait(xid, NULL, NULL, XLTW_None);
	}
	if (look)
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		ready = extension_ready();
		if (ready)
		{
			logged = decoded_save(&before);
			aps = load_projections(NULL, false);
			confirm = oldest_checkpoint(aps, confirm, &active);
			log_holding(aps);
		}
		PopActiveSnapshot();
		last_look_at = GetCurrentTimestamp();
		looked_any = aps != NIL;
		look_owed = false;
	}
	else
	{
		logged = decoded_save(&before);
		look_owed = true;
	}
	projector_xact_end(guc_level);
	MemoryContextSwitchTo(TopMemoryContext);
	MemoryContextDelete(batch_cxt);
	if (look && aps == NIL)
		return BATCH_NOTHING;

	/* what the workers may read now */
	SpinLockAcquire(&projector->mutex);
	my_db->decoded_upto = decode_end;
	my_db->logged_upto = logged;
	if (logged > before)
		decoded_note_file(before, logged);
	if (ready)
	{
		my_db->trimmed_upto = trim_upto = Max(trim_upto, confirm);
		/* how many workers to run follows from it (workers_needed) */
		my_db->active = active;
	}
	SpinLockRelease(&projector->mutex);
	projector_wake_workers();
	if (ready)
		slot_confirm(confirm);
	/* the workers first: a slow projection's unit can free many files */
	(void) decoded_trim(trim_upto, TRIM_PER_BATCH);
	return BATCH_DONE;
}

/* Set the latches of the database's projection workers */
void
projector_wake_workers(void)
{
	Latch	   *latches[MAX_PROJECTION_WORKERS];
	int			n = 0;
	int			i;

	SpinLockAcquire(&projector->mutex);
	for (i = 0; i < MAX_PROJECTION_WORKERS; i++)
		if (my_db->workers[i].latch != NULL)
			latches[n++] = my_db->workers[i].latch;
	SpinLockRelease(&projector->mutex);
	for (i = 0; i < n; i++)
		SetLatch(latches[i]);
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
 * - search_path: ES_SEARCH_PATH at start, then the path at rest (a
 *   projection worker's last handler's, see rest_on), as its value at
 *   PGC_S_SESSION, like a SET.  ES_SEARCH_PATH is also its reset value
 *   (what RESET and SET ... TO DEFAULT give inside a handler, the
 *   database's path otherwise), which guc.c sets only from a
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
void
projector_pin_settings(bool at_start, const char *application_name)
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
		SetConfigOption("application_name", application_name, PGC_SUSET, PGC_S_OVERRIDE);
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

	if (at_start)
	{
		SetConfigOption("search_path", ES_SEARCH_PATH, PGC_SUSET, PGC_S_OVERRIDE);
		SetConfigOption("search_path", ES_SEARCH_PATH, PGC_SUSET, PGC_S_SESSION);
	}
	else
		rest_on(rest_path);		/* the path at rest */
}

/*
 * Take the database's entry in shared memory, or exit: another projector
 * has it, the database is being dropped, or there is no free entry.
 */
static void
projector_claim(Oid dboid)
{
	XLogRecPtr	start_lsn = GetXLogInsertRecPtr();

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
}

/*
 * Not attached: attach, unless a publication or slot of somebody else's
 * is in the way (look again later) or there is nothing to project (leave,
 * unless a wake-up came meanwhile).  Returns true once attached.
 */
static bool
projector_try_attach(void)
{
	TimestampTz now = GetCurrentTimestamp();
	AttachResult ar;

	if (attach_retry_at > now)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(TimestampDifferenceMilliseconds(now, attach_retry_at), 1),
						 PG_WAIT_EXTENSION);
		return false;
	}
	ar = projector_attach();
	if (ar == ATTACH_NOTHING)
	{
		projector_detach();
		if (projector_may_leave())
			proc_exit(0);
	}
	return ar == ATTACH_OK;
}

/*
 * Decode what was flushed, up to a batch, and hand it to the workers.  A
 * batch is a transaction: only when there is something to log, a wake-up
 * (an administrator's change, which the workers look at too), much WAL
 * without events (to let the slot go), or a paused projection to report
 * now and then.  Otherwise what was decoded has no events: the workers may
 * count it as read at once.
 */
static void
projector_step(void)
{
	XLogRecPtr	decode_end = decoding_read();
	TimestampTz now = GetCurrentTimestamp();
	XLogRecPtr	before;
	XLogRecPtr	target;

	if (decoded_xacts != NIL || woken ||
		(look_owed && TimestampDifferenceExceeds(last_look_at, now, LOOK_EVERY_MS)) ||
		decode_end - last_batch_end > RAISE_EVERY_BYTES ||
		(holding_any && TimestampDifferenceExceeds(last_batch_at, now, 60 * 1000)))
	{
		BatchResult r = decoder_batch(decode_end);

		decoding_reset();
		if (r == BATCH_NOTHING)
		{
			projector_detach();
			if (projector_may_leave())
				proc_exit(0);
			woken = true;
			return;
		}
		last_batch_end = decode_end;
		last_batch_at = now;
		return;
	}

	SpinLockAcquire(&projector->mutex);
	before = my_db->decoded_upto;
	target = my_db->last_append_end;
	if (decode_end > before)
		my_db->decoded_upto = decode_end;
	SpinLockRelease(&projector->mutex);
	/* somebody waits for a checkpoint past the last append */
	if (decode_end > before && before < target)
		projector_wake_workers();
}

/*
 * VACUUM es.projections, at most every VACUUM_EVERY_MS.  Every unit of
 * every projection updates its row, hundreds of times a second under load;
 * heap pruning frees the space of the dead versions but does not make it
 * reusable (the free space map), so between two vacuums the table grows
 * by the size of the updates (about 200 kB/s), and every read of it (a
 * worker's pick is a scan) reads it all.  Autovacuum comes at most once
 * per autovacuum_naptime, or not at all.  The projector vacuums it itself,
 * skipping it when another session holds a conflicting lock, and without
 * truncating it (that takes an exclusive lock, and waits up to 5 seconds
 * for it while every worker reads the table).  Outside a transaction
 * (vacuum runs its own).
 */
static void
projector_vacuum_projections(void)
{
	static TimestampTz last = 0;
	TimestampTz now = GetCurrentTimestamp();
	MemoryContext cxt;
	MemoryContext old;
	MemoryContext save_portal = PortalContext;
	VacuumParams params;
	Oid			nsp;
	Oid			relid = InvalidOid;

	if (!TimestampDifferenceExceeds(last, now, VACUUM_EVERY_MS))
		return;
	last = now;
	cxt = AllocSetContextCreate(TopMemoryContext, "es projector vacuum", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	memset(&params, 0, sizeof(params));
	params.options = VACOPT_VACUUM | VACOPT_SKIP_LOCKED | ES_VACOPT_DEFAULTS;
	params.freeze_min_age = params.freeze_table_age = -1;
	params.multixact_freeze_min_age = params.multixact_freeze_table_age = -1;
	params.log_min_duration = -1;
	params.nworkers = -1;		/* no parallel workers */
	/* never the exclusive lock of a truncation: the space is reused */
	params.truncate = VACOPTVALUE_DISABLED;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, "es: vacuuming es.projections");
	nsp = get_namespace_oid("es", true);
	if (OidIsValid(nsp))
		relid = get_relname_relid("projections", nsp);
	if (OidIsValid(relid))
	{
		MemoryContextSwitchTo(cxt);
		PortalContext = cxt;
		vacuum_compat(list_make1(makeVacuumRelation(makeRangeVar("es", "projections", -1),
													relid, NIL)),
					  &params, GetAccessStrategy(BAS_VACUUM), cxt);
		PortalContext = save_portal;
	}
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

void
es_projector_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	projector_claim(dboid);

	/* the server's values, before the database's and the role's apply */
	server_statement_timeout = StatementTimeout;
	server_lock_timeout = LockTimeout;
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	/* whatever the database's (or the role's) settings say */
	projector_pin_settings(true, "es projector");
	/* for the messages written outside a transaction */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	my_db_name = get_database_name(dboid);
	my_db_name = MemoryContextStrdup(TopMemoryContext,
									 my_db_name ? my_db_name : psprintf("%u", dboid));
	CommitTransactionCommand();
	/* a fresh server: what an earlier one logged for the workers is stale */
	if (!my_db->log_ready)
	{
		decoded_remove_all();
		SpinLockAcquire(&projector->mutex);
		my_db->log_ready = true;
		my_db->decoded_upto = my_db->logged_upto = InvalidXLogRecPtr;
		my_db->nrecent = my_db->recent_first = 0;
		my_db->recent_from = my_db->trimmed_upto = InvalidXLogRecPtr;
		SpinLockRelease(&projector->mutex);
	}
	snprintf(slot_name, sizeof(slot_name), "es_projector_%u", dboid);
	decoding_init();

	for (;;)
	{
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
		/* a database's settings cannot change them for good, but check */
		projector_pin_settings(false, "es projector");

		if (decoding == NULL && !projector_try_attach())
			continue;
		projector_step();
		if (decoding == NULL)
			continue;			/* detached, and stays */
		projection_workers_start(worker_handles);
		projector_vacuum_projections();

		woken = false;
		if (decoding->reader->EndRecPtr >= GetFlushRecPtr(NULL))
		{
			int			rc;

			/* idle: remove the applied batch files left, unless woken */
			while (!MyLatch->is_set && decoded_trim(trim_upto, TRIM_PER_BATCH))
				CHECK_FOR_INTERRUPTS();
			rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						   look_owed ? LOOK_EVERY_MS : 1000L, PG_WAIT_EXTENSION);

			woken = (rc & WL_LATCH_SET) != 0;
		}
	}
}
