/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The projector's shared state and what backends do with it: the
 *	  transaction callback that wakes (or asks the launcher to start) the
 *	  projector of a database after an append, the utility hook that stops it
 *	  before DROP DATABASE, the SQL-callable functions behind
 *	  es.wait_for_projection and the admin functions, and the launcher, a
 *	  static background worker that starts one projector per database.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/lmgr.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"

#include "es.h"
#include "projector/projector.h"

ProjectorShared *projector = NULL;
static bool appended_in_xact = false;
static bool wake_at_commit = false;
static bool changed_at_commit = false;	/* wake es.wait_for_projection */
static bool projection_in_xact = false; /* a projection changed: no PREPARE */
ProcessUtility_hook_type prev_process_utility = NULL;

/* ------------------------------------------------------------------------
 * Shared memory, and what backends do
 * ------------------------------------------------------------------------
 */

/* Size of the shared state: an entry per database (es.max_projector_databases) */
static Size
projector_shmem_size(void)
{
	return add_size(offsetof(ProjectorShared, dbs),
					mul_size(es_max_projector_databases, sizeof(ProjectorDb)));
}

/* Ask for the shared state (shmem_request_hook, preload only) */
void
ProjectorShmemRequest(void)
{
	RequestAddinShmemSpace(MAXALIGN(projector_shmem_size()));
}

void
ProjectorShmemStartup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	projector = ShmemInitStruct("es projector", projector_shmem_size(), &found);
	if (!found)
	{
		memset(projector, 0, projector_shmem_size());
		SpinLockInit(&projector->mutex);
		pg_atomic_init_u64(&projector->progress, 0);
		pg_atomic_init_u32(&projector->waiters, 0);
		pg_atomic_init_u32(&projector->registry_gen, 0);
		ConditionVariableInit(&projector->progress_cv);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * The entry of a database, created if asked (init_lsn: the WAL insert
 * position read before taking the mutex); under the mutex.
 */
ProjectorDb *
projector_db(Oid dboid, bool create, XLogRecPtr init_lsn)
{
	ProjectorDb *free_entry = NULL;
	int			i;

	for (i = 0; i < es_max_projector_databases; i++)
	{
		if (projector->dbs[i].dboid == dboid)
			return &projector->dbs[i];
		if (free_entry == NULL && projector->dbs[i].dboid == InvalidOid)
			free_entry = &projector->dbs[i];
	}
	if (!create)
		return NULL;
	if (free_entry == NULL)
	{
		/* reuse the entry of a database without a projector */
		for (i = 0; i < es_max_projector_databases && free_entry == NULL; i++)
			if (projector->dbs[i].pid == 0 && !projector->dbs[i].start_requested)
				free_entry = &projector->dbs[i];
		if (free_entry == NULL)
			return NULL;
	}
	memset(free_entry, 0, sizeof(ProjectorDb));
	free_entry->dboid = dboid;
	/* no append is known: anything before init_lsn may be unprojected */
	free_entry->last_append_end = init_lsn;
	return free_entry;
}

/*
 * projector_db found no free entry for "dboid": es.max_projector_databases
 * have a projector running or asked for.  The database gets none for now
 * (its async projections are not applied); say so, at most once a minute
 * in the whole server (at start the launcher starts a projector for every
 * database, most of which have nothing to project).  Not under the mutex.
 */
void
projector_full_warning(Oid dboid)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		warn = false;

	SpinLockAcquire(&projector->mutex);
	if (projector->full_warned_at == 0 ||
		TimestampDifferenceExceeds(projector->full_warned_at, now, 60 * 1000))
	{
		projector->full_warned_at = now;
		warn = true;
	}
	SpinLockRelease(&projector->mutex);
	if (warn)
		ereport(WARNING,
				(errmsg("es: %d databases have a projector already; the async projections of database %u are not applied for now",
						es_max_projector_databases, dboid),
				 errdetail("es runs the projectors of at most es.max_projector_databases = %d databases at the same time.",
						   es_max_projector_databases),
				 errhint("Raise es.max_projector_databases (at server start), or drop the async projections of databases that do not need them; its projector starts once another database's has exited, at its next append or es.resume_projection.")));
}

/*
 * Ask the launcher for the projector of "db" (not before "not_before"; 0:
 * now).  A projector about to leave sees the request and stays.  Under the
 * mutex; returns the launcher's latch to set after releasing it, if the
 * database has no projector running.
 */
Latch *
request_start(ProjectorDb *db, TimestampTz not_before)
{
	db->start_requested = true;
	db->dropping = false;
	db->restart_at = not_before;
	return db->pid == 0 ? projector->launcher_latch : NULL;
}

/*
 * Something a waiting es.wait_for_projection may be waiting for has
 * committed: a projector's transaction, an append, a change of a
 * projection's state.  Wake the waiters (if any: appends call this too).
 * The counter is bumped first, and waiters count themselves before they
 * read it, so one of the two always sees the other.
 */
void
projector_progress(void)
{
	if (projector == NULL)
		return;
	pg_atomic_fetch_add_u64(&projector->progress, 1);
	if (pg_atomic_read_u32(&projector->waiters) > 0)
		ConditionVariableBroadcast(&projector->progress_cv);
}

/* At commit: record an append's WAL end, wake or start the projector */
void
projector_xact_callback(XactEvent event, void *arg)
{
	ProjectorDb *db;
	Latch	   *latch = NULL;
	Latch	   *launcher = NULL;

	/*
	 * An async projection's state changes: the workers read their cache
	 * again (pick_cache).  Before the change is visible, so that a worker
	 * whose snapshot shows it also sees the new count.
	 */
	if (event == XACT_EVENT_PRE_COMMIT && wake_at_commit && projector != NULL)
		pg_atomic_fetch_add_u32(&projector->registry_gen, 1);

	/*
	 * COMMIT PREPARED runs no callback of ours: it would wake neither the
	 * projector, nor its workers' caches, nor es.wait_for_projection.
	 */
	if (event == XACT_EVENT_PRE_PREPARE && projection_in_xact)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot PREPARE a transaction that has changed a projection"),
				 errdetail("The projector and es.wait_for_projection learn of the change when its transaction commits, and COMMIT PREPARED does not tell them.")));
	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
		event != XACT_EVENT_PARALLEL_COMMIT && event != XACT_EVENT_PARALLEL_ABORT &&
		event != XACT_EVENT_PREPARE)
		return;
	if (!appended_in_xact && !wake_at_commit && !changed_at_commit)
		return;
	if (event == XACT_EVENT_COMMIT && projector != NULL &&
		(appended_in_xact || wake_at_commit))
	{
		/* commits that ended earlier are before ours in the WAL */
		XLogRecPtr	now_lsn = XLogRecPtrIsInvalid(XactLastCommitEnd)
			? GetXLogInsertRecPtr() : XactLastCommitEnd;
		bool		start = wake_at_commit;

		SpinLockAcquire(&projector->mutex);
		db = projector_db(MyDatabaseId, false, InvalidXLogRecPtr);
		if (db == NULL)
		{
			/*
			 * The first append here since the server started (the launcher
			 * looked at the databases that existed then): let a projector
			 * check whether there is anything to project (a restored dump).
			 */
			db = projector_db(MyDatabaseId, true, now_lsn);
			start = true;
		}
		if (db != NULL)
		{
			if (appended_in_xact && XactLastCommitEnd > db->last_append_end)
				db->last_append_end = XactLastCommitEnd;
			latch = db->latch;
			if (start)
				launcher = request_start(db, 0);
		}
		SpinLockRelease(&projector->mutex);
		if (latch)
			SetLatch(latch);
		if (launcher)
			SetLatch(launcher);
		if (db == NULL)
			projector_full_warning(MyDatabaseId);
	}
	if (event == XACT_EVENT_COMMIT)
		projector_progress();
	appended_in_xact = false;
	wake_at_commit = false;
	changed_at_commit = false;
	projection_in_xact = false;
}

void
projector_note_append(void)
{
	appended_in_xact = true;
}

/*
 * DROP DATABASE: our projector and its workers are connected to it; stop
 * them (and keep the launcher from restarting the projector) before PostgreSQL checks for other users.
 * DROP EXTENSION es: wake the projector, which then drops its slot and
 * exits.
 */
void
projector_process_utility(PlannedStmt *pstmt, const char *queryString,
						  bool readOnlyTree, ProcessUtilityContext context,
						  ParamListInfo params, QueryEnvironment *queryEnv,
						  DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;

	volatile Oid dropping_db = InvalidOid;

	if (projector != NULL && IsA(parsetree, DropdbStmt))
	{
		Oid			dboid = get_database_oid(((DropdbStmt *) parsetree)->dbname, true);
		int			tries;

		dropping_db = dboid;

		for (tries = 0; OidIsValid(dboid) && tries < 1000; tries++)
		{
			pid_t		pids[MAX_PROJECTION_WORKERS + 1];
			int			n = 0;
			int			i;
			ProjectorDb *db;

			SpinLockAcquire(&projector->mutex);
			db = projector_db(dboid, false, InvalidXLogRecPtr);
			if (db != NULL)
			{
				db->dropping = true;
				db->start_requested = false;
				if (db->pid != 0)
					pids[n++] = db->pid;
				for (i = 0; i < MAX_PROJECTION_WORKERS; i++)
					if (db->workers[i].pid != 0)
						pids[n++] = db->workers[i].pid;
			}
			SpinLockRelease(&projector->mutex);
			if (n == 0)
				break;
			/* the projector, and its workers (again now and then: one may be starting) */
			for (i = 0; i < n && tries % 100 == 0; i++)
				kill(pids[i], SIGTERM);
			pg_usleep(10000L);
			CHECK_FOR_INTERRUPTS();
		}
	}
	else if (IsA(parsetree, DropStmt) &&
			 ((DropStmt *) parsetree)->removeType == OBJECT_EXTENSION)
		wake_at_commit = true;

	PG_TRY();
	{
		if (prev_process_utility)
			prev_process_utility(pstmt, queryString, readOnlyTree, context,
								 params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	}
	PG_CATCH();
	{
		/* the database stays: so does its projector */
		if (OidIsValid(dropping_db))
		{
			ProjectorDb *db;
			Latch	   *launcher = NULL;

			SpinLockAcquire(&projector->mutex);
			db = projector_db(dropping_db, false, InvalidXLogRecPtr);
			if (db != NULL && db->dropping)
				launcher = request_start(db, 0);
			SpinLockRelease(&projector->mutex);
			if (launcher)
				SetLatch(launcher);
		}
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * The description of one of es's background workers: connected to a
 * database (or to none, the launcher), started once recovery has finished,
 * its entry point es's "function", its pg_stat_activity.backend_type
 * "type"; the caller sets its name, argument and restart policy.
 */
void
projector_bgworker_init(BackgroundWorker *worker, const char *function, const char *type)
{
	memset(worker, 0, sizeof(*worker));
	worker->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker->bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker->bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker->bgw_library_name, BGW_MAXLEN, "es");
	snprintf(worker->bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker->bgw_type, BGW_MAXLEN, "%s", type);
	snprintf(worker->bgw_name, BGW_MAXLEN, "%s", type);
}

/* Register the launcher (at server start, from _PG_init) */
void
launcher_register(void)
{
	BackgroundWorker worker;

	projector_bgworker_init(&worker, "es_launcher_main", "es launcher");
	worker.bgw_restart_time = 5;
	RegisterBackgroundWorker(&worker);
}

PG_FUNCTION_INFO_V1(es_projector_check);

/* es._projector_check(): can this server run async projections? */
Datum
es_projector_check(PG_FUNCTION_ARGS)
{
	/* the shared state exists only when es is preloaded */
	if (projector == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("asynchronous projections need es in shared_preload_libraries"),
				 errhint("Set shared_preload_libraries = 'es' and restart the server, or use mode => 'inline'.")));
	if (wal_level < WAL_LEVEL_LOGICAL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("asynchronous projections need wal_level = logical"),
				 errhint("Set wal_level = logical and restart the server, or use mode => 'inline'.")));
	if (max_replication_slots < 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("asynchronous projections need a replication slot, and max_replication_slots is 0"),
				 errhint("Raise max_replication_slots and restart the server.")));
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(es_projector_wake);

/* es._projector_wake(): start or wake the projector when we commit */
Datum
es_projector_wake(PG_FUNCTION_ARGS)
{
	wake_at_commit = true;
	projection_in_xact = true;
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(es_projection_changed);

/*
 * es._projection_changed(): a projection's state changes in this
 * transaction (an inline pause or drop); wake es.wait_for_projection's
 * waiters when it commits.  es._projector_wake() does so too.
 */
Datum
es_projection_changed(PG_FUNCTION_ARGS)
{
	changed_at_commit = true;
	projection_in_xact = true;
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(es_projector_target_lsn);

/*
 * es._projector_target_lsn(position): a WAL position at or after the commit
 * of every append that committed before this call (position NULL), or of
 * the append of the event at position; NULL while that event is not
 * committed.  A committed event is visible a moment before its commit is
 * recorded in shared memory (at the end of the commit), so wait for its
 * transaction's lock, which is released after that.
 */
Datum
es_projector_target_lsn(PG_FUNCTION_ARGS)
{
	XLogRecPtr	lsn;
	ProjectorDb *db;
	Latch	   *launcher = NULL;
	XLogRecPtr	now_lsn;

	if (!PG_ARGISNULL(0))
	{
		Oid			types[1] = {INT8OID};
		Datum		values[1] = {PG_GETARG_DATUM(0)};
		TransactionId xid = InvalidTransactionId;
		bool		isnull;
		int			guc_level;

		guc_level = es_internal_begin();
		SPI_connect();
		if (SPI_execute_with_args("SELECT e.xmin FROM ONLY es.events e"
								  " WHERE e.global_position OPERATOR(pg_catalog.=) $1",
								  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "es: could not read es.events");
		if (SPI_processed > 0)
			xid = DatumGetTransactionId(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 1, &isnull));
		SPI_finish();
		es_internal_end(guc_level);
		/* not there yet, or our own append: not committed */
		if (!TransactionIdIsValid(xid) || TransactionIdIsCurrentTransactionId(xid))
			PG_RETURN_NULL();
		if (TransactionIdIsNormal(xid))
			XactLockTableWait(xid, NULL, NULL, XLTW_None);
	}

	now_lsn = GetXLogInsertRecPtr();
	if (projector == NULL)
		PG_RETURN_LSN(now_lsn);
	SpinLockAcquire(&projector->mutex);
	db = projector_db(MyDatabaseId, false, InvalidXLogRecPtr);
	if (db == NULL)
	{
		/* not seen since the server started: have a projector look */
		db = projector_db(MyDatabaseId, true, now_lsn);
		if (db != NULL)
			launcher = request_start(db, 0);
	}
	lsn = db != NULL ? db->last_append_end : now_lsn;
	SpinLockRelease(&projector->mutex);
	if (db == NULL)
		projector_full_warning(MyDatabaseId);
	if (launcher)
		SetLatch(launcher);
	PG_RETURN_LSN(lsn);
}

PG_FUNCTION_INFO_V1(es_projection_changes);

/*
 * es._projection_changes(): a counter that moves whenever a projector, an
 * append or a change of a projection's state commits (0 without preload).
 * es.wait_for_projection reads it before it looks at the projection, and
 * sleeps in es._projection_wait until it moves.
 */
Datum
es_projection_changes(PG_FUNCTION_ARGS)
{
	if (projector == NULL)
		PG_RETURN_INT64(0);
	PG_RETURN_INT64((int64) pg_atomic_read_u64(&projector->progress));
}

PG_FUNCTION_INFO_V1(es_projection_wait);

/*
 * es._projection_wait(seen, deadline): sleep until the counter of
 * es._projection_changes() is no longer "seen" (true), or until the
 * deadline (false).  On the projector's condition variable, which every
 * such commit broadcasts; interruptible.  Without preload there is no
 * projector and no shared counter: it sleeps 10 ms (or up to the
 * deadline) and returns true, for the caller to look again.
 */
Datum
es_projection_wait(PG_FUNCTION_ARGS)
{
	uint64		seen = (uint64) PG_GETARG_INT64(0);
	TimestampTz deadline = PG_GETARG_TIMESTAMPTZ(1);
	volatile bool woken = false;
	long		ms;

	ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
	if (ms <= 0)
		PG_RETURN_BOOL(false);
	if (projector == NULL)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(ms, 10), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		PG_RETURN_BOOL(true);
	}

	pg_atomic_fetch_add_u32(&projector->waiters, 1);
	PG_TRY();
	{
		ConditionVariablePrepareToSleep(&projector->progress_cv);
		for (;;)
		{
			if (pg_atomic_read_u64(&projector->progress) != seen)
			{
				woken = true;
				break;
			}
			ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
			if (ms <= 0)
				break;
			(void) ConditionVariableTimedSleep(&projector->progress_cv, ms,
											   PG_WAIT_EXTENSION);
		}
		ConditionVariableCancelSleep();
	}
	PG_FINALLY();
	{
		pg_atomic_fetch_sub_u32(&projector->waiters, 1);
	}
	PG_END_TRY();
	PG_RETURN_BOOL(woken);
}

/* ------------------------------------------------------------------------
 * The launcher
 * ------------------------------------------------------------------------
 */

static void
launcher_start_worker(Oid dboid)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	projector_bgworker_init(&worker, "es_projector_main", "es projector");
	snprintf(worker.bgw_name, BGW_MAXLEN, "es projector for database %u", dboid);
	worker.bgw_main_arg = ObjectIdGetDatum(dboid);
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		ProjectorDb *db;

		XLogRecPtr	now_lsn = GetXLogInsertRecPtr();
		TimestampTz later = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 5000);

		ereport(WARNING,
				(errmsg("es: could not start the projector of database %u; retrying in 5 seconds", dboid),
				 errhint("Raise max_worker_processes.")));
		SpinLockAcquire(&projector->mutex);
		db = projector_db(dboid, true, now_lsn);
		if (db != NULL)
			(void) request_start(db, later);	/* we are the launcher */
		SpinLockRelease(&projector->mutex);
		if (db == NULL)
			projector_full_warning(dboid);
	}
}

/*
 * The launcher: a projector for every database at start (each exits at
 * once where there is nothing to project), then on request: a committed
 * create, resume or rebuild, or a projector that exited on an error (after
 * a few seconds).
 */
void
es_launcher_main(Datum arg)
{
	List	   *dbs = NIL;
	ListCell   *lc;
	Oid		   *to_start;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	SpinLockAcquire(&projector->mutex);
	projector->launcher_latch = MyLatch;
	SpinLockRelease(&projector->mutex);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		/* the list outlives the transaction (whose memory commit resets) */
		if (db->datallowconn && !db->datistemplate)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			dbs = lappend_oid(dbs, db->oid);
			MemoryContextSwitchTo(old);
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();

	foreach(lc, dbs)
		launcher_start_worker(lfirst_oid(lc));
	list_free(dbs);

	to_start = MemoryContextAlloc(TopMemoryContext, sizeof(Oid) * es_max_projector_databases);
	for (;;)
	{
		TimestampTz now;
		int			n;
		int			i;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		now = GetCurrentTimestamp();
		n = 0;
		/* no allocation under a spinlock: an array sized at start */
		SpinLockAcquire(&projector->mutex);
		for (i = 0; i < es_max_projector_databases; i++)
		{
			ProjectorDb *db = &projector->dbs[i];

			if (db->dboid != InvalidOid && db->start_requested &&
				db->pid == 0 && !db->dropping && db->restart_at <= now)
			{
				db->start_requested = false;
				to_start[n++] = db->dboid;
			}
		}
		SpinLockRelease(&projector->mutex);
		for (i = 0; i < n; i++)
			launcher_start_worker(to_start[i]);
	}
}
