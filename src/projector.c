/*-------------------------------------------------------------------------
 *
 * projector.c
 *	  Asynchronous projections: a launcher (a static background worker, so
 *	  only shared_preload_libraries = 'es' is needed) starts one projector
 *	  per database.  The projector owns the logical slot es_projector_<oid>,
 *	  decodes es.events inserts through PostgreSQL's own pgoutput (the
 *	  publication es_events), and applies each committed transaction, in
 *	  commit order, to the live async projections, in one local transaction
 *	  per batch that also advances every projection's checkpoint
 *	  (applied_lsn).  Only then is the slot confirmed, up to the oldest
 *	  checkpoint, so a crash at any point replays exactly what was not
 *	  applied.
 *
 * A projection that joins late (created, rebuilt) first reads the table in
 * position order below the gap-safe horizon (caught_up_to is exact), then
 * switches to the decoded stream: with the decoding drained at L0 it takes
 * a snapshot S, applies what S shows above caught_up_to, and stores S and
 * applied_lsn = L0.  A decoded transaction after L0 is applied only if S
 * does not show it; once the decoding passes the WAL insert position read
 * just after S was taken, S is forgotten.  Before any snapshot is taken
 * the projector waits until the transactions it decoded have left the
 * ProcArray, so every transaction that ends at or before L0 is in S.
 *
 * The projector connects as the bootstrap superuser: it pins who it is and
 * its settings whatever the database's settings say, names every object
 * its statements use with its schema, uses the publication and the slot
 * only once verified to be es's own, keeps the decoded rows of es.events
 * only, and runs user code (handlers, upcasters, the truncation of a
 * projection's tables) as the code's or the table's owner, never as
 * itself.
 *
 * A paused or failed projection keeps its checkpoint, which holds the
 * slot (and WAL) back; the projector says so in the log.  When it becomes
 * active again, decoding restarts from the slot, and the projections that
 * are further on skip what they have already applied.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogutils.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/decode.h"
#include "replication/logical.h"
#include "replication/logicalproto.h"
#include "replication/slot.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/pmsignal.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/timeout.h"
#include "utils/fmgroids.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "es.h"

#define DECODE_MAX_XACTS	1000	/* decoded transactions per batch */
#define DECODE_MAX_EVENTS	20000	/* decoded events per batch */
#define CATCHUP_BATCH		5000	/* events per catch-up transaction */
#define RAISE_EVERY_BYTES	(16 * 1024 * 1024)	/* idle checkpoint raise */
#define HOLD_LOG_INTERVAL_MS (5 * 60 * 1000)	/* repeat "holds WAL" */

/* Shared state: one entry per database that has (had) a projector */
typedef struct ProjectorDb
{
	Oid			dboid;			/* InvalidOid: free entry */
	pid_t		pid;			/* the running projector, 0: none */
	Latch	   *latch;
	bool		start_requested;	/* for the launcher */
	bool		dropping;		/* DROP DATABASE: do not restart */
	TimestampTz restart_at;		/* after an error exit: not before */
	XLogRecPtr	last_append_end;	/* WAL end of the latest append's commit */
} ProjectorDb;

typedef struct ProjectorShared
{
	slock_t		mutex;
	Latch	   *launcher_latch;
	TimestampTz full_warned_at;	/* the last "no free entry" warning */
	/* es.wait_for_projection: what it waits on (projector_progress) */
	pg_atomic_uint64 progress;	/* bumped after each commit that matters */
	pg_atomic_uint32 waiters;	/* backends asleep on progress_cv */
	ConditionVariable progress_cv;
	ProjectorDb dbs[FLEXIBLE_ARRAY_MEMBER];	/* es.max_projector_databases */
} ProjectorShared;

static ProjectorShared *projector = NULL;
static bool appended_in_xact = false;
static bool wake_at_commit = false;
static bool changed_at_commit = false;	/* wake es.wait_for_projection */
static ProcessUtility_hook_type prev_process_utility = NULL;

/* The projector's own state */
typedef struct DecodedXact
{
	TransactionId xid;
	XLogRecPtr	end_lsn;
	int			npositions;
	int			maxpositions;
	int64	   *positions;
} DecodedXact;

/* An async projection as one batch sees it */
typedef struct AsyncProjection
{
	Projection *p;
	bool		park;			/* on_error = 'park' */
	bool		failed;
	char	   *phase;
	int64		caught_up_to;
	int64		last_position;
	XLogRecPtr	applied_lsn;	/* Invalid: not live yet */
	Datum		live_snapshot;	/* pg_snapshot, 0: none */
	XLogRecPtr	live_snapshot_lsn;
	/* results of the batch */
	bool		changed;
	XLogRecPtr	new_applied_lsn;
	bool		stopped;		/* failed in this batch */
	int64		error_position;
	char	   *error_message;
} AsyncProjection;

static MemoryContext decode_cxt = NULL;
static List *decoded = NIL;		/* complete transactions, commit order */
static int	decoded_events = 0;
static DecodedXact *current = NULL;
static LogicalDecodingContext *decoding = NULL;
static XLogRecPtr processed_upto = InvalidXLogRecPtr;
static List *active_before = NIL;	/* names active in the last batch */
static List *holding_logged = NIL;	/* names said to hold WAL */
static TimestampTz holding_logged_at = 0;
static char slot_name[NAMEDATALEN];
static bool woken = true;		/* the latch was set: look at the catalog */
static bool catching_pending = false;	/* a catch-up has more to read */
static bool holding_any = false;	/* a paused or failed projection holds WAL */
static XLogRecPtr last_batch_end = InvalidXLogRecPtr;
static XLogRecPtr active_floor = InvalidXLogRecPtr;	/* lowest running checkpoint */
static TimestampTz slot_saved_at = 0;
static TimestampTz last_batch_at = 0;
static ProjectorDb *my_db = NULL;

/*
 * es.events, as of the last attach: the decoder keeps the inserts of that
 * relation only, whatever the publication publishes.
 */
static Oid	events_relid = InvalidOid;
static bool foreign_relation_logged = false;

/* Why the projector waits instead of attaching (NULL: it does not) */
static const char *waiting_for = NULL;
static TimestampTz waiting_logged_at = 0;
static TimestampTz attach_retry_at = 0;

PGDLLEXPORT void es_launcher_main(Datum arg);
PGDLLEXPORT void es_projector_main(Datum arg);

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
		ConditionVariableInit(&projector->progress_cv);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * The entry of a database, created if asked (init_lsn: the WAL insert
 * position read before taking the mutex); under the mutex.
 */
static ProjectorDb *
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
static void
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
static Latch *
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
static void
projector_progress(void)
{
	if (projector == NULL)
		return;
	pg_atomic_fetch_add_u64(&projector->progress, 1);
	if (pg_atomic_read_u32(&projector->waiters) > 0)
		ConditionVariableBroadcast(&projector->progress_cv);
}

/* At commit: record an append's WAL end, wake or start the projector */
static void
projector_xact_callback(XactEvent event, void *arg)
{
	ProjectorDb *db;
	Latch	   *latch = NULL;
	Latch	   *launcher = NULL;

	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
		event != XACT_EVENT_PARALLEL_COMMIT && event != XACT_EVENT_PARALLEL_ABORT)
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
}

void
projector_note_append(void)
{
	appended_in_xact = true;
}

/*
 * DROP DATABASE: our projector is connected to it; stop it (and keep the
 * launcher from restarting it) before PostgreSQL checks for other users.
 * DROP EXTENSION es: wake the projector, which then drops its slot and
 * exits.
 */
static void
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
			pid_t		pid = 0;
			ProjectorDb *db;

			SpinLockAcquire(&projector->mutex);
			db = projector_db(dboid, false, InvalidXLogRecPtr);
			if (db != NULL)
			{
				db->dropping = true;
				db->start_requested = false;
				pid = db->pid;
			}
			SpinLockRelease(&projector->mutex);
			if (pid == 0)
				break;
			if (tries == 0)
				kill(pid, SIGTERM);
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

void
ProjectorInit(void)
{
	BackgroundWorker worker;

	RegisterXactCallback(projector_xact_callback, NULL);
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = projector_process_utility;
	if (!process_shared_preload_libraries_in_progress)
		return;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "es");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "es_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "es launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "es launcher");
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
static int
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
static void
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
 * The launcher
 * ------------------------------------------------------------------------
 */

static void
launcher_start_worker(Oid dboid)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "es");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "es_projector_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "es projector for database %u", dboid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "es projector");
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

		if (db->datallowconn && !db->datistemplate)
			dbs = lappend_oid(dbs, db->oid);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();

	foreach(lc, dbs)
		launcher_start_worker(lfirst_oid(lc));
	list_free(dbs);

	for (;;)
	{
		List	   *to_start = NIL;
		TimestampTz now;
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
		SpinLockAcquire(&projector->mutex);
		for (i = 0; i < es_max_projector_databases; i++)
		{
			ProjectorDb *db = &projector->dbs[i];

			if (db->dboid != InvalidOid && db->start_requested &&
				db->pid == 0 && !db->dropping && db->restart_at <= now)
			{
				db->start_requested = false;
				to_start = lappend_oid(to_start, db->dboid);
			}
		}
		SpinLockRelease(&projector->mutex);
		foreach(lc, to_start)
			launcher_start_worker(lfirst_oid(lc));
		list_free(to_start);
	}
}

/* ------------------------------------------------------------------------
 * Decoding
 * ------------------------------------------------------------------------
 */

static void
decode_prepare_write(LogicalDecodingContext *ctx, XLogRecPtr lsn,
					 TransactionId xid, bool last_write)
{
	resetStringInfo(ctx->out);
}

/*
 * pgoutput sent a change of a relation that is not es.events: the
 * publication publishes more than es's own (it is verified when the
 * projector attaches, so only a superuser could have changed it since).
 * Its rows are ignored; say so once per attach.
 */
static void
decode_foreign_relation(LogicalRepRelId relid)
{
	if (foreign_relation_logged)
		return;
	foreign_relation_logged = true;
	ereport(WARNING,
			(errmsg("es projector: ignoring the decoded changes of relation %u, which is not es.events",
					relid),
			 errhint("The publication es_events must publish es.events only.")));
}

/* pgoutput's messages: keep the positions of each committed transaction */
static void
decode_write(LogicalDecodingContext *ctx, XLogRecPtr lsn,
			 TransactionId xid, bool last_write)
{
	StringInfoData in;
	MemoryContext old = MemoryContextSwitchTo(decode_cxt);

	in.data = ctx->out->data;
	in.len = ctx->out->len;
	in.maxlen = ctx->out->maxlen;
	in.cursor = 0;
	switch (pq_getmsgbyte(&in))
	{
		case LOGICAL_REP_MSG_BEGIN:
			{
				LogicalRepBeginData begin;

				logicalrep_read_begin(&in, &begin);
				current = palloc0(sizeof(DecodedXact));
				current->xid = begin.xid;
				current->maxpositions = 8;
				current->positions = palloc(sizeof(int64) * 8);
				break;
			}
		case LOGICAL_REP_MSG_RELATION:
			{
				LogicalRepRelation *rel = logicalrep_read_rel(&in);

				if (rel->remoteid != events_relid)
					decode_foreign_relation(rel->remoteid);
				break;
			}
		case LOGICAL_REP_MSG_INSERT:
			{
				LogicalRepTupleData tup;
				LogicalRepRelId relid = logicalrep_read_insert(&in, &tup);

				/* a row of another relation is no event position */
				if (relid != events_relid)
				{
					decode_foreign_relation(relid);
					break;
				}
				if (current != NULL && tup.ncols >= 1 &&
					tup.colstatus[0] == LOGICALREP_COLUMN_TEXT)
				{
					if (current->npositions == current->maxpositions)
					{
						current->maxpositions *= 2;
						current->positions = repalloc(current->positions,
													  sizeof(int64) * current->maxpositions);
					}
					current->positions[current->npositions++] =
						pg_strtoint64(tup.colvalues[0].data);
					decoded_events++;
				}
				break;
			}
		case LOGICAL_REP_MSG_COMMIT:
			{
				LogicalRepCommitData commit;

				logicalrep_read_commit(&in, &commit);
				if (current != NULL)
				{
					current->end_lsn = commit.end_lsn;
					if (current->npositions > 0)
						decoded = lappend(decoded, current);
					current = NULL;
				}
				break;
			}
		default:
			/* type and origin messages, other changes: not needed */
			break;
	}
	MemoryContextSwitchTo(old);
}

static void decoding_mark(bool on);

/* Start decoding where the slot was confirmed */
static void
decoding_start(void)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	List	   *options;

	options = list_make2(makeDefElem("proto_version", (Node *) makeString("1"), -1),
						 makeDefElem("publication_names", (Node *) makeString("es_events"), -1));
	decoding = CreateDecodingContext(InvalidXLogRecPtr, options, false,
									 XL_ROUTINE(.page_read = read_local_xlog_page,
												.segment_open = wal_segment_open,
												.segment_close = wal_segment_close),
									 decode_prepare_write, decode_write, NULL);
	XLogBeginRead(decoding->reader, MyReplicationSlot->data.restart_lsn);
	decoding_mark(false);
	processed_upto = MyReplicationSlot->data.confirmed_flush;
	MemoryContextSwitchTo(old);
}

static void
decoding_stop(void)
{
	if (decoding != NULL)
		FreeDecodingContext(decoding);
	decoding = NULL;
	decoded = NIL;
	current = NULL;
	decoded_events = 0;
	MemoryContextReset(decode_cxt);
}

/*
 * CreateDecodingContext marks this process as one that decodes: its xmin
 * then counts for catalogs only, and other sessions may prune row versions
 * of ordinary tables that its snapshots still need.  A walsender does
 * nothing else; the projector also runs transactions on the read tables
 * and es.projections, so it carries the mark only while it decodes.
 */
static void
decoding_mark(bool on)
{
	LWLockAcquire(ProcArrayLock, LW_EXCLUSIVE);
	if (on)
		MyProc->statusFlags |= PROC_IN_LOGICAL_DECODING;
	else
		MyProc->statusFlags &= ~PROC_IN_LOGICAL_DECODING;
	ProcGlobal->statusFlags[MyProc->pgxactoff] = MyProc->statusFlags;
	LWLockRelease(ProcArrayLock);
}

/* Decode what was flushed, up to a batch; returns the decode position */
static XLogRecPtr
decoding_read(void)
{
	XLogRecPtr	flush = GetFlushRecPtr(NULL);

	Assert(!IsTransactionState());
	decoding_mark(true);

	while (decoding->reader->EndRecPtr < flush &&
		   list_length(decoded) < DECODE_MAX_XACTS &&
		   decoded_events < DECODE_MAX_EVENTS)
	{
		char	   *errm = NULL;
		XLogRecord *record = XLogReadRecord(decoding->reader, &errm);

		if (errm)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("es projector: could not read WAL: %s", errm)));
		if (record != NULL)
			LogicalDecodingProcessRecord(decoding, decoding->reader);
		CHECK_FOR_INTERRUPTS();
		if (!PostmasterIsAlive())
			proc_exit(1);
	}
	decoding_mark(false);
	return decoding->reader->EndRecPtr;
}

/* ------------------------------------------------------------------------
 * Applying
 * ------------------------------------------------------------------------
 */

/* The full xid of a recently decoded transaction */
static FullTransactionId
full_xid(TransactionId xid)
{
	FullTransactionId next = ReadNextFullTransactionId();
	uint32		epoch = EpochFromFullTransactionId(next);

	if (xid > XidFromFullTransactionId(next))
		epoch--;
	return FullTransactionIdFromEpochAndXid(epoch, xid);
}

/* Does the projection's switch snapshot show this transaction? */
static bool
in_live_snapshot(AsyncProjection *ap, TransactionId xid)
{
	if (ap->live_snapshot == (Datum) 0)
		return false;
	return DatumGetBool(DirectFunctionCall2(pg_visible_in_snapshot,
											FullTransactionIdGetDatum(full_xid(xid)),
											ap->live_snapshot));
}

/*
 * Hand the events at these positions to a projection, as snap shows them;
 * returns how many there were (an event scavenged since is not).
 */
static int
apply_positions(Projection *p, int64 *positions, int n, Snapshot snap)
{
	Relation	rel = table_open(es_relation_oid(ES_EVENTS), AccessShareLock);
	Relation	idx = index_open(es_relation_oid(ES_EVENTS_POSITION), AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	MemoryContext per_event = AllocSetContextCreate(CurrentMemoryContext,
													"es projector event",
													ALLOCSET_DEFAULT_SIZES);
	IndexScanDesc scan = index_beginscan_compat(rel, idx, snap, 1, 0);
	int			guc_level;
	int			found = 0;
	int			i;

	upcast_begin();
	projection_flush_discard(p);
	guc_level = handlers_begin();
	for (i = 0; i < n; i++)
	{
		ScanKeyData key;

		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ,
					Int64GetDatum(positions[i]));
		projection_current_position = positions[i];
		index_rescan(scan, &key, 1, NULL, 0);
		if (index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			MemoryContext old = MemoryContextSwitchTo(per_event);
			bool		should_free;
			HeapTuple	row = ExecFetchSlotHeapTuple(slot, false, &should_free);

			projection_apply(p, projection_event_from_row(row, RelationGetDescr(rel)));
			MemoryContextSwitchTo(old);
			MemoryContextReset(per_event);
			found++;
		}
		ExecClearTuple(slot);
		CHECK_FOR_INTERRUPTS();
	}
	projection_flush(p);
	handlers_end(guc_level);
	upcast_end();
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	MemoryContextDelete(per_event);
	index_close(idx, NoLock);
	table_close(rel, NoLock);
	return found;
}

/*
 * Run one unit of work in a subtransaction.  On error, returns false with
 * the error's SQLSTATE and message; the unit's writes are rolled back.
 */
typedef struct ApplyUnit
{
	Projection *p;
	int64	   *positions;		/* apply these, or ... */
	int			n;
	int64		from;			/* ... the range (from, before), limit */
	int64		before;
	int			limit;
	Snapshot	snap;
	int64		last;			/* range: the last position read */
	int64		count;			/* range: how many were read */
	/* the error, when it failed */
	char	   *sqlstate;
	char	   *message;
	char	   *context;
} ApplyUnit;

static bool
apply_unit(ApplyUnit *u)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		if (u->positions != NULL)
			apply_positions(u->p, u->positions, u->n, u->snap);
		else
			u->last = projection_replay(u->p, u->from, u->before, u->limit,
										u->snap, &u->count);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		/* a handler's statement_timeout must not fire after it failed */
		disable_timeout(STATEMENT_TIMEOUT, false);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		u->sqlstate = pstrdup(unpack_sql_state(edata->sqlerrcode));
		u->message = pstrdup(edata->message);
		u->context = edata->context ? pstrdup(edata->context) : NULL;
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * Did the unit fail because it was cancelled: a statement_timeout of the
 * handler, or pg_cancel_backend() on the projector?  That failure is the
 * event's at projection_current_position: the event is not run again to
 * find out (a handler that never returns would hold the projector again).
 */
static bool
unit_cancelled(ApplyUnit *u)
{
	/* a batch handler's call was for many events: they are tried one by one */
	return u->sqlstate != NULL && strcmp(u->sqlstate, "57014") == 0 &&
		!u->p->batch;
}

/*
 * A batch handler failed on the events of a transaction, as a whole: find
 * the first event it fails on alone, for the error report, each alone in
 * a subtransaction inside one that is rolled back (nothing of the
 * transaction stays applied).  Fills "failed" with that event's error;
 * returns its position, or 0 when each succeeds alone.
 */
static int64
batch_failing_event(Projection *p, DecodedXact *x, Snapshot snap, ApplyUnit *failed)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	int64		position = 0;
	int			i;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	for (i = 0; i < x->npositions && position == 0; i++)
	{
		ApplyUnit	one = {.p = p, .snap = snap, .positions = &x->positions[i], .n = 1};

		if (!apply_unit(&one))
		{
			position = x->positions[i];
			*failed = one;
		}
	}
	RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return position;
}

/* Record a parked event */
static void
park_event(AsyncProjection *ap, int64 position, ApplyUnit *u)
{
	Datum		values[4];
	Oid			types[4] = {TEXTOID, INT8OID, TEXTOID, TEXTOID};

	values[0] = CStringGetTextDatum(ap->p->name);
	values[1] = Int64GetDatum(position);
	values[2] = CStringGetTextDatum(u->sqlstate);
	values[3] = CStringGetTextDatum(u->message);
	SPI_connect();
	if (SPI_execute_with_args(
							  "INSERT INTO es.projection_errors AS pe"
							  " (projection, global_position, event_type, sqlstate, message)"
							  " SELECT $1, $2, coalesce((SELECT e.event_type FROM ONLY es.events e"
							  "   WHERE e.global_position OPERATOR(pg_catalog.=) $2), ''), $3, $4"
							  " ON CONFLICT (projection, global_position) DO UPDATE"
							  " SET attempts = pe.attempts OPERATOR(pg_catalog.+) 1,"
							  "     sqlstate = excluded.sqlstate, message = excluded.message,"
							  "     last_failed_at = pg_catalog.now()",
							  4, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "es projector: could not park an event");
	SPI_finish();
	ereport(LOG,
			(errmsg("es projector: projection \"%s\" parked the event at position " INT64_FORMAT ": %s",
					ap->p->name, position, u->message),
			 u->context ? errcontext_msg("%s", u->context) : 0));
}

static void
stop_projection(AsyncProjection *ap, int64 position, ApplyUnit *u)
{
	ap->stopped = true;
	ap->error_position = position;
	ap->error_message = psprintf("%s: %s", u->sqlstate, u->message);
	ereport(WARNING,
			(errmsg("es projector: projection \"%s\" stopped at the event at position " INT64_FORMAT,
					ap->p->name, position),
			 errdetail("%s: %s", u->sqlstate, u->message),
			 errhint("Fix the handler, then call es.resume_projection('%s').", ap->p->name),
			 u->context ? errcontext_msg("%s", u->context) : 0));
}

/*
 * Apply the decoded transactions a live projection has not seen; on an
 * error, stop it before the failing transaction, or park the failing
 * events.
 */
static void
apply_live(AsyncProjection *ap, XLogRecPtr decode_end, Snapshot snap)
{
	List	   *pending = NIL;
	ListCell   *lc;
	int			total = 0;
	ApplyUnit	u;

	foreach(lc, decoded)
	{
		DecodedXact *x = lfirst(lc);

		if (x->end_lsn <= ap->applied_lsn || in_live_snapshot(ap, x->xid))
			continue;
		pending = lappend(pending, x);
		total += x->npositions;
	}
	/* after a restart the decoding may start behind the checkpoint */
	ap->new_applied_lsn = Max(ap->applied_lsn, decode_end);
	if (pending == NIL)
		return;
	ap->changed = true;

	/* first, all of it at once */
	memset(&u, 0, sizeof(u));
	u.p = ap->p;
	u.snap = snap;
	u.positions = palloc(sizeof(int64) * total);
	foreach(lc, pending)
	{
		DecodedXact *x = lfirst(lc);

		memcpy(u.positions + u.n, x->positions, sizeof(int64) * x->npositions);
		u.n += x->npositions;
	}
	if (apply_unit(&u))
	{
		int			i;

		for (i = 0; i < u.n; i++)
			ap->last_position = Max(ap->last_position, u.positions[i]);
		return;
	}

	/* an error: again, a transaction (stop) or an event (park) at a time */
	{
		XLogRecPtr	prev_end = ap->applied_lsn;
		ApplyUnit	first = u;
		int64		cancelled = unit_cancelled(&u) ? projection_current_position : 0;

		foreach(lc, pending)
		{
			DecodedXact *x = lfirst(lc);
			int			i;
			bool		has_cancelled = false;

			for (i = 0; cancelled != 0 && i < x->npositions; i++)
				has_cancelled |= x->positions[i] == cancelled;
			if (!ap->park && has_cancelled)
			{
				/* the cancelled event fails its transaction, once */
				stop_projection(ap, cancelled, &first);
				ap->new_applied_lsn = prev_end;
				return;
			}
			if (!ap->park)
			{
				memset(&u, 0, sizeof(u));
				u.p = ap->p;
				u.snap = snap;
				u.positions = x->positions;
				u.n = x->npositions;
				if (!apply_unit(&u))
				{
					int64		at = projection_current_position;

					/* a batch handler: which event of x fails */
					if (ap->p->batch)
					{
						ApplyUnit	alone = u;
						int64		pos = batch_failing_event(ap->p, x, snap, &alone);

						if (pos != 0)
						{
							at = pos;
							u = alone;
						}
						else
							at = x->positions[0];
					}
					/* nothing of x stays applied; resume starts at x */
					stop_projection(ap, at, &u);
					ap->new_applied_lsn = prev_end;
					return;
				}
			}
			else
			{
				for (i = 0; i < x->npositions; i++)
				{
					ApplyUnit	one = {.p = ap->p, .snap = snap,
					.positions = &x->positions[i], .n = 1};

					if (x->positions[i] == cancelled)
						park_event(ap, cancelled, &first);
					else if (!apply_unit(&one))
						park_event(ap, x->positions[i], &one);
				}
			}
			for (i = 0; i < x->npositions; i++)
				ap->last_position = Max(ap->last_position, x->positions[i]);
			prev_end = x->end_lsn;
		}
	}
}

/* ------------------------------------------------------------------------
 * The projector's transactions
 * ------------------------------------------------------------------------
 */

/* Run a statement through SPI with a plan kept for the worker's life */
typedef struct KeptPlan
{
	const char *sql;
	SPIPlanPtr	plan;
} KeptPlan;

static int
spi_run(KeptPlan *kp, int nargs, Oid *types, Datum *values, const char *nulls,
		bool read_only)
{
	int			rc;

	if (kp->plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(kp->sql, nargs, types);

		if (plan == NULL)
			elog(ERROR, "es projector: SPI_prepare failed: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		kp->plan = plan;
	}
	rc = SPI_execute_plan(kp->plan, values, nulls, read_only, 0);
	if (rc < 0)
		elog(ERROR, "es projector: SPI_execute_plan failed: %s",
			 SPI_result_code_string(rc));
	return rc;
}

static KeptPlan load_plan = {
	"SELECT p.name, p.handler::pg_catalog.oid AS handler, p.event_types, p.paused,"
	"       pr.proowner, p.on_error, p.phase, p.caught_up_to, p.last_position,"
	"       p.applied_lsn, p.live_snapshot, p.live_snapshot_lsn,"
	"       p.failed_at IS NOT NULL AS failed,"
	"       pg_catalog.to_jsonb(p) OPERATOR(pg_catalog.->>) 'search_path' AS search_path,"
	"       (SELECT pg_catalog.substr(c, 19)"
	"          FROM pg_catalog.pg_db_role_setting s, pg_catalog.unnest(s.setconfig) c"
	"         WHERE s.setdatabase OPERATOR(pg_catalog.=) ANY (ARRAY[0, $2]::pg_catalog.oid[])"
	"           AND s.setrole OPERATOR(pg_catalog.=) ANY (ARRAY[0, pr.proowner])"
	"           AND c OPERATOR(pg_catalog.~~) 'statement\\_timeout=%'"
	"         ORDER BY s.setrole OPERATOR(pg_catalog.=) 0, s.setdatabase OPERATOR(pg_catalog.=) 0"
	"         LIMIT 1) AS statement_timeout,"
	"       (SELECT pg_catalog.substr(c, 14)"
	"          FROM pg_catalog.pg_db_role_setting s, pg_catalog.unnest(s.setconfig) c"
	"         WHERE s.setdatabase OPERATOR(pg_catalog.=) ANY (ARRAY[0, $2]::pg_catalog.oid[])"
	"           AND s.setrole OPERATOR(pg_catalog.=) ANY (ARRAY[0, pr.proowner])"
	"           AND c OPERATOR(pg_catalog.~~) 'lock\\_timeout=%'"
	"         ORDER BY s.setrole OPERATOR(pg_catalog.=) 0, s.setdatabase OPERATOR(pg_catalog.=) 0"
	"         LIMIT 1) AS lock_timeout"
	"  FROM ONLY es.projections p JOIN pg_catalog.pg_proc pr"
	"    ON pr.oid OPERATOR(pg_catalog.=) p.handler::pg_catalog.oid"
	" WHERE p.mode OPERATOR(pg_catalog.=) 'async'"
	"   AND ($1 IS NULL OR p.name OPERATOR(pg_catalog.=) $1)"
	" ORDER BY p.name FOR NO KEY UPDATE OF p", NULL
};

/*
 * The timeouts of handlers.  A session of the handler's owner in this
 * database would get statement_timeout and lock_timeout from the settings
 * of the owner in the database, of the owner, of the database (ALTER ROLE
 * / ALTER DATABASE ... SET, pg_db_role_setting), else from the server's
 * configuration: the projector applies the same to each handler call, with
 * the server's values as they were when it started (its own session has
 * the bootstrap superuser's and pins lock_timeout to 0).  0: none.
 */
static int	server_statement_timeout = 0;
static int	server_lock_timeout = 0;

/* A stored setting's value in milliseconds, else "otherwise" */
static int
handler_timeout(const char *value, int otherwise)
{
	int			ms;

	if (value == NULL || !parse_int(value, &ms, GUC_UNIT_MS, NULL) || ms < 0)
		return otherwise;
	return ms;
}

/*
 * Lock and load the async projections (all, or the one named) into the
 * current memory context, with their handlers' timeouts.
 */
static List *
load_projections(const char *name)
{
	Oid			types[2] = {TEXTOID, OIDOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	MemoryContext cxt = CurrentMemoryContext;
	List	   *result = NIL;
	uint64		i;

	values[0] = name ? CStringGetTextDatum(name) : (Datum) 0;
	nulls[0] = name ? ' ' : 'n';
	values[1] = ObjectIdGetDatum(MyDatabaseId);
	SPI_connect();
	spi_run(&load_plan, 2, types, values, nulls, false);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(cxt);
		AsyncProjection *ap = palloc0(sizeof(AsyncProjection));
		bool		isnull;
		Datum		d;

		ap->p = projection_from_row(tup, desc, cxt);
		ap->park = strcmp(SPI_getvalue(tup, desc, 6), "park") == 0;
		ap->phase = SPI_getvalue(tup, desc, 7);
		ap->caught_up_to = DatumGetInt64(SPI_getbinval(tup, desc, 8, &isnull));
		ap->last_position = DatumGetInt64(SPI_getbinval(tup, desc, 9, &isnull));
		d = SPI_getbinval(tup, desc, 10, &isnull);
		ap->applied_lsn = isnull ? InvalidXLogRecPtr : DatumGetLSN(d);
		d = SPI_getbinval(tup, desc, 11, &isnull);
		ap->live_snapshot = isnull ? (Datum) 0 : datumCopy(d, false, -1);
		d = SPI_getbinval(tup, desc, 12, &isnull);
		ap->live_snapshot_lsn = isnull ? InvalidXLogRecPtr : DatumGetLSN(d);
		ap->failed = DatumGetBool(SPI_getbinval(tup, desc, 13, &isnull));
		ap->p->statement_timeout = handler_timeout(SPI_getvalue(tup, desc, 15),
												   server_statement_timeout);
		ap->p->lock_timeout = handler_timeout(SPI_getvalue(tup, desc, 16),
											  server_lock_timeout);
		ap->new_applied_lsn = ap->applied_lsn;
		result = lappend(result, ap);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return result;
}

static bool
is_live(AsyncProjection *ap)
{
	return strcmp(ap->phase, "live") == 0 && !XLogRecPtrIsInvalid(ap->applied_lsn);
}

static bool
is_active(AsyncProjection *ap)
{
	return !ap->p->paused && !ap->failed;
}

static KeptPlan save_live_plan = {
	"UPDATE ONLY es.projections SET applied_lsn = $2,"
	"       last_position = greatest(last_position, $3),"
	"       last_applied_at = CASE WHEN $4 THEN pg_catalog.now() ELSE last_applied_at END,"
	"       live_snapshot = CASE WHEN $5 THEN NULL ELSE live_snapshot END,"
	"       live_snapshot_lsn = CASE WHEN $5 THEN NULL ELSE live_snapshot_lsn END,"
	"       failed_at = CASE WHEN $6 IS NULL THEN failed_at ELSE pg_catalog.now() END,"
	"       last_error = coalesce($6, last_error),"
	"       last_error_position = coalesce($7, last_error_position)"
	" WHERE name OPERATOR(pg_catalog.=) $1", NULL
};

/* Store a projection's checkpoint (and its error, if it stopped) */
static void
save_checkpoint(AsyncProjection *ap, bool applied, bool forget_snapshot)
{
	Oid			types[7] = {TEXTOID, PG_LSNOID, INT8OID, BOOLOID, BOOLOID, TEXTOID, INT8OID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', 'n', 'n'};

	values[0] = CStringGetTextDatum(ap->p->name);
	values[1] = LSNGetDatum(ap->new_applied_lsn);
	values[2] = Int64GetDatum(ap->last_position);
	values[3] = BoolGetDatum(applied);
	values[4] = BoolGetDatum(forget_snapshot);
	if (ap->stopped)
	{
		values[5] = CStringGetTextDatum(ap->error_message);
		values[6] = Int64GetDatum(ap->error_position);
		nulls[5] = nulls[6] = ' ';
	}
	SPI_connect();
	spi_run(&save_live_plan, 7, types, values, nulls, false);
	SPI_finish();
}

static KeptPlan save_catchup_plan = {
	"UPDATE ONLY es.projections SET caught_up_to = $2,"
	"       last_position = greatest(last_position, $2),"
	"       last_applied_at = pg_catalog.now(),"
	"       phase = CASE WHEN $3 THEN 'live' ELSE phase END,"
	"       applied_lsn = CASE WHEN $3 THEN $4 ELSE applied_lsn END,"
	"       live_snapshot = CASE WHEN $3 THEN $5 ELSE live_snapshot END,"
	"       live_snapshot_lsn = CASE WHEN $3 THEN $6 ELSE live_snapshot_lsn END,"
	"       failed_at = CASE WHEN $7 IS NULL THEN failed_at ELSE pg_catalog.now() END,"
	"       last_error = coalesce($7, last_error),"
	"       last_error_position = coalesce($8, last_error_position)"
	" WHERE name OPERATOR(pg_catalog.=) $1", NULL
};

static void
save_catchup(AsyncProjection *ap, int64 caught_up_to, bool go_live,
			 XLogRecPtr l0, Datum snap, XLogRecPtr snap_lsn)
{
	Oid			types[8] = {TEXTOID, INT8OID, BOOLOID, PG_LSNOID, PG_SNAPSHOTOID,
	PG_LSNOID, TEXTOID, INT8OID};
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', 'n', 'n', 'n', 'n', 'n'};

	values[0] = CStringGetTextDatum(ap->p->name);
	values[1] = Int64GetDatum(caught_up_to);
	values[2] = BoolGetDatum(go_live);
	if (go_live)
	{
		values[3] = LSNGetDatum(l0);
		values[4] = snap;
		values[5] = LSNGetDatum(snap_lsn);
		nulls[3] = nulls[4] = nulls[5] = ' ';
	}
	if (ap->stopped)
	{
		values[6] = CStringGetTextDatum(ap->error_message);
		values[7] = Int64GetDatum(ap->error_position);
		nulls[6] = nulls[7] = ' ';
	}
	SPI_connect();
	spi_run(&save_catchup_plan, 8, types, values, nulls, false);
	SPI_finish();
}

/* Is es installed here, at a version with async projections? */
static bool
extension_ready(void)
{
	Oid			nsp;
	Oid			relid;

	if (!OidIsValid(get_extension_oid("es", true)))
		return false;
	nsp = get_namespace_oid("es", true);
	if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid("projection_errors", nsp)))
		return false;
	/* wait out a DROP EXTENSION in progress, then look again */
	relid = get_relname_relid("projections", nsp);
	if (!OidIsValid(relid))
		return false;
	LockRelationOid(relid, AccessShareLock);
	return SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid));
}

static bool
name_in(List *names, const char *name)
{
	ListCell   *lc;

	foreach(lc, names)
		if (strcmp(lfirst(lc), name) == 0)
			return true;
	return false;
}

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

typedef enum BatchResult
{
	BATCH_DONE,
	BATCH_REWIND,				/* decode again from the slot */
	BATCH_NOTHING				/* no async projection left */
} BatchResult;

/*
 * Apply the decoded batch (possibly empty) to the live projections in one
 * transaction, then confirm the slot.  *catching gets the names of the
 * projections that still read the table.
 */
static BatchResult
run_batch(XLogRecPtr decode_end, List **catching)
{
	MemoryContext batch_cxt = AllocSetContextCreate(TopMemoryContext, "es projector batch",
													ALLOCSET_DEFAULT_SIZES);
	List	   *aps;
	ListCell   *lc;
	XLogRecPtr	confirm = decode_end;
	XLogRecPtr	target;
	bool		rewind = false;
	bool		any = false;
	List	   *active = NIL;
	int			guc_level;

	guc_level = projector_xact_begin("applying");
	MemoryContextSwitchTo(batch_cxt);

	/* the decoded transactions must be visible to the snapshot below */
	foreach(lc, decoded)
	{
		DecodedXact *x = lfirst(lc);

		if (TransactionIdIsInProgress(x->xid))
			XactLockTableWait(x->xid, NULL, NULL, XLTW_None);
	}
	PushActiveSnapshot(GetTransactionSnapshot());

	if (!extension_ready())
	{
		PopActiveSnapshot();
		projector_xact_end(guc_level);
		MemoryContextDelete(batch_cxt);
		return BATCH_NOTHING;
	}
	aps = load_projections(NULL);
	(void) projection_event_desc_get(true);

	SpinLockAcquire(&projector->mutex);
	target = my_db->last_append_end;
	SpinLockRelease(&projector->mutex);

	foreach(lc, aps)
	{
		AsyncProjection *ap = lfirst(lc);

		any = true;
		if (!is_live(ap))
			continue;
		if (is_active(ap) && !name_in(active_before, ap->p->name) &&
			ap->applied_lsn < processed_upto)
		{
			if (ap->applied_lsn < MyReplicationSlot->data.confirmed_flush)
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
			rewind = true;
		}
	}

	if (!rewind)
	{
		Snapshot	snap = GetActiveSnapshot();

		foreach(lc, aps)
		{
			AsyncProjection *ap = lfirst(lc);
			bool		forget;

			if (!is_live(ap) || !is_active(ap))
				continue;
			apply_live(ap, decode_end, snap);
			if (!ap->stopped)
				active = lappend(active, ap->p->name);
			forget = ap->live_snapshot != (Datum) 0 &&
				ap->new_applied_lsn >= ap->live_snapshot_lsn;
			if (ap->changed || ap->stopped || forget ||
				(ap->new_applied_lsn > ap->applied_lsn &&
				 (ap->new_applied_lsn - ap->applied_lsn > RAISE_EVERY_BYTES ||
				  ap->applied_lsn < target)))
				save_checkpoint(ap, ap->changed, forget);
			else
				ap->new_applied_lsn = ap->applied_lsn;	/* not stored */
		}
		active_floor = InvalidXLogRecPtr;
		foreach(lc, aps)
		{
			AsyncProjection *ap = lfirst(lc);

			if (is_live(ap) && ap->new_applied_lsn < confirm)
				confirm = ap->new_applied_lsn;
			if (is_live(ap) && is_active(ap) && !ap->stopped &&
				(XLogRecPtrIsInvalid(active_floor) || ap->new_applied_lsn < active_floor))
				active_floor = ap->new_applied_lsn;
		}
		log_holding(aps);
	}

	/* what still reads the table, for the caller */
	*catching = NIL;
	foreach(lc, aps)
	{
		AsyncProjection *ap = lfirst(lc);

		if (!is_live(ap) && is_active(ap))
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			*catching = lappend(*catching, pstrdup(ap->p->name));
			MemoryContextSwitchTo(old);
		}
	}
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		List	   *names = NIL;

		foreach(lc, active)
			names = lappend(names, pstrdup(lfirst(lc)));
		list_free_deep(active_before);
		active_before = rewind ? NIL : names;
		MemoryContextSwitchTo(old);
	}

	PopActiveSnapshot();
	projector_xact_end(guc_level);
	MemoryContextSwitchTo(TopMemoryContext);
	MemoryContextDelete(batch_cxt);

	if (!any)
		return BATCH_NOTHING;
	if (rewind)
		return BATCH_REWIND;
	if (!XLogRecPtrIsInvalid(confirm))
	{
		TimestampTz now = GetCurrentTimestamp();

		LogicalConfirmReceivedLocation(confirm);
		/*
		 * PostgreSQL writes a slot's confirmed position to disk only now and
		 * then: save it every few seconds, so that a restart after a crash
		 * does not decode (and skip) much WAL again.
		 */
		if (TimestampDifferenceExceeds(slot_saved_at, now, 5000))
		{
			ReplicationSlotMarkDirty();
			ReplicationSlotSave();
			slot_saved_at = now;
		}
	}
	return BATCH_DONE;
}

/*
 * On an error while reading the table: "stop" keeps what precedes the
 * failing event and halts there; "park" applies the events one by one and
 * parks those that fail.  Returns the last position that counts as done.
 */
static int64
catchup_recover(AsyncProjection *ap, int64 from, int64 before, int limit,
				Snapshot snap, ApplyUnit *failed)
{
	if (!ap->park && ap->p->batch)
	{
		int64		last = from;

		/*
		 * A batch handler's call failed for many events: apply them one by
		 * one, keeping each, up to the one that fails, and stop there.
		 */
		for (;;)
		{
			ApplyUnit	one = {.p = ap->p, .snap = snap, .from = last,
			.before = before, .limit = 1};

			if (!apply_unit(&one))
			{
				stop_projection(ap, projection_current_position, &one);
				return last;
			}
			if (one.count == 0)
				return last;	/* each succeeds alone */
			last = one.last;
		}
	}
	else if (!ap->park)
	{
		int64		at = projection_current_position;
		int64		done = from;
		ApplyUnit	u = {.p = ap->p, .snap = snap, .from = from, .before = at};

		/* keep what precedes the failing event */
		if (at > from)
		{
			if (apply_unit(&u))
				done = u.last;
			else
			{
				at = projection_current_position;	/* an earlier one failed */
				failed = &u;
			}
		}
		stop_projection(ap, at, failed);
		return done;
	}
	else
	{
		int64		last = from;
		int64		cancelled = unit_cancelled(failed) ? projection_current_position : 0;
		int			n;

		/*
		 * One event at a time, each in its own subtransaction; a cancelled
		 * event is parked with its first error, without running it again.
		 */
		for (n = 0; limit == 0 || n < limit; n++)
		{
			int64		bound = cancelled > last ? cancelled : before;
			ApplyUnit	one = {.p = ap->p, .snap = snap, .from = last,
			.before = bound, .limit = 1};

			if (apply_unit(&one))
			{
				if (one.count > 0)
					last = one.last;
				else if (bound == cancelled)
				{
					park_event(ap, cancelled, failed);
					last = cancelled;
				}
				else
					break;
			}
			else
			{
				park_event(ap, projection_current_position, &one);
				last = projection_current_position;
			}
		}
		return last;
	}
}

static KeptPlan current_snapshot_plan = {
	"SELECT pg_catalog.pg_current_snapshot(), pg_catalog.pg_current_wal_insert_lsn()", NULL
};

/*
 * One step of a projection that reads the table: a batch below the
 * horizon, or, near the head, the switch to the decoded stream (see the
 * top of the file).  Returns true when it has more to read.
 */
static bool
catchup_step(const char *name)
{
	MemoryContext step_cxt = AllocSetContextCreate(TopMemoryContext, "es projector catch-up",
												   ALLOCSET_DEFAULT_SIZES);
	List	   *aps;
	AsyncProjection *ap;
	Snapshot	snap;
	int64		low;
	int64		last;
	bool		more = false;
	bool		went_live;
	ApplyUnit	u;
	int			guc_level;

	/* a batch below the horizon */
	guc_level = projector_xact_begin("catching up");
	MemoryContextSwitchTo(step_cxt);
	snap = horizon_snapshot(&low);
	PushActiveSnapshot(snap);
	aps = load_projections(name);
	ap = aps != NIL ? linitial(aps) : NULL;
	if (ap == NULL || is_live(ap) || !is_active(ap))
	{
		PopActiveSnapshot();
		UnregisterSnapshot(snap);
		projector_xact_end(guc_level);
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextDelete(step_cxt);
		return false;
	}
	(void) projection_event_desc_get(true);
	memset(&u, 0, sizeof(u));
	u.p = ap->p;
	u.snap = snap;
	u.from = ap->caught_up_to;
	u.before = low;
	u.limit = CATCHUP_BATCH;
	if (apply_unit(&u))
	{
		last = u.last;
		more = u.count >= CATCHUP_BATCH;
	}
	else
		last = catchup_recover(ap, u.from, low, CATCHUP_BATCH, snap, &u);
	if (last != ap->caught_up_to || ap->stopped)
		save_catchup(ap, last, false, InvalidXLogRecPtr, (Datum) 0, InvalidXLogRecPtr);
	PopActiveSnapshot();
	UnregisterSnapshot(snap);
	projector_xact_end(guc_level);
	MemoryContextSwitchTo(TopMemoryContext);

	if (more || ap->stopped)
	{
		MemoryContextDelete(step_cxt);
		return more;
	}

	/* the switch: S before anything else in the transaction */
	MemoryContextReset(step_cxt);
	guc_level = projector_xact_begin("catching up");
	MemoryContextSwitchTo(step_cxt);
	PushActiveSnapshot(GetTransactionSnapshot());
	{
		Datum		s;
		XLogRecPtr	s_lsn;
		bool		isnull;

		SPI_connect();
		spi_run(&current_snapshot_plan, 0, NULL, NULL, NULL, true);
		s = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		s_lsn = DatumGetLSN(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		{
			MemoryContext old = MemoryContextSwitchTo(step_cxt);

			s = datumCopy(s, false, -1);
			MemoryContextSwitchTo(old);
		}
		SPI_finish();

		aps = load_projections(name);
		ap = aps != NIL ? linitial(aps) : NULL;
		if (ap != NULL && !is_live(ap) && is_active(ap))
		{
			(void) projection_event_desc_get(true);
			memset(&u, 0, sizeof(u));
			u.p = ap->p;
			u.snap = GetActiveSnapshot();
			u.from = ap->caught_up_to;
			if (apply_unit(&u))
				save_catchup(ap, u.last, true, processed_upto, s, s_lsn);
			else
			{
				last = catchup_recover(ap, u.from, 0, 0, u.snap, &u);
				if (ap->stopped)
					save_catchup(ap, last, false, InvalidXLogRecPtr, (Datum) 0, InvalidXLogRecPtr);
				else
					save_catchup(ap, last, true, processed_upto, s, s_lsn);
			}
		}
	}
	went_live = ap != NULL && !ap->stopped && !is_live(ap) && is_active(ap);
	PopActiveSnapshot();
	projector_xact_end(guc_level);
	MemoryContextSwitchTo(TopMemoryContext);
	/* live from processed_upto on: it has seen what was decoded */
	if (went_live)
		active_before = lappend(active_before, pstrdup(name));
	MemoryContextDelete(step_cxt);
	return false;
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

/* ------------------------------------------------------------------------
 * The publication and the slot: es's own, or none
 * ------------------------------------------------------------------------
 */

/*
 * The publication es_events as the projector finds it.  es's own is owned
 * by a superuser (the projector's own role, the bootstrap superuser, which
 * creates it; or the superuser who restored a dump, which brings it back
 * publishing nothing: pg_dump does not dump an extension table's
 * membership), publishes inserts only, and publishes es.events (whole
 * rows or a column list with global_position, no row filter) and nothing
 * else: no other table, no schema, not FOR ALL TABLES.  A database owner
 * who is not a superuser may create publications, so one named es_events
 * may be somebody else's, made to feed the projector rows of another
 * table as event positions.
 */
typedef enum PubState
{
	PUB_NONE,					/* there is none */
	PUB_OURS,					/* es's own, publishing es.events */
	PUB_OURS_EMPTY,				/* es's own, publishing nothing */
	PUB_FOREIGN					/* somebody else's: not used, not dropped */
} PubState;

static KeptPlan publication_plan = {
	"SELECT p.pubowner, p.puballtables, p.pubinsert,"
	"       p.pubupdate OR p.pubdelete OR p.pubtruncate,"
	"       EXISTS (SELECT FROM pg_catalog.pg_publication_namespace n"
	"                WHERE n.pnpubid OPERATOR(pg_catalog.=) p.oid),"
	"       EXISTS (SELECT FROM pg_catalog.pg_publication_rel r"
	"                WHERE r.prpubid OPERATOR(pg_catalog.=) p.oid"
	"                  AND r.prrelid OPERATOR(pg_catalog.<>) $1),"
	"       EXISTS (SELECT FROM pg_catalog.pg_publication_rel r"
	"                WHERE r.prpubid OPERATOR(pg_catalog.=) p.oid"
	"                  AND r.prrelid OPERATOR(pg_catalog.=) $1),"
	"       EXISTS (SELECT FROM pg_catalog.pg_publication_rel r"
	"                WHERE r.prpubid OPERATOR(pg_catalog.=) p.oid"
	"                  AND r.prrelid OPERATOR(pg_catalog.=) $1"
	"                  AND (r.prqual IS NOT NULL"
	"                       OR NOT (r.prattrs IS NULL OR"
	"                               1::pg_catalog.int2 OPERATOR(pg_catalog.=) ANY (r.prattrs))))"
	"  FROM pg_catalog.pg_publication p"
	" WHERE p.pubname OPERATOR(pg_catalog.=) 'es_events'", NULL
};

/*
 * What the publication es_events is (see PubState), with "events" the OID
 * of es.events (InvalidOid after DROP EXTENSION).  When it is somebody
 * else's, *why says why, in the caller's memory context.  In a
 * transaction.
 */
static PubState
publication_state(Oid events, char **why)
{
	MemoryContext cxt = CurrentMemoryContext;
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(events)};
	PubState	state = PUB_NONE;
	const char *reason = NULL;

	SPI_connect();
	spi_run(&publication_plan, 1, types, values, NULL, true);
	if (SPI_processed > 0)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Oid			owner = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
		bool		b[8];
		int			i;

		for (i = 2; i <= 8; i++)
			b[i - 1] = DatumGetBool(SPI_getbinval(tup, desc, i, &isnull));
		if (owner != GetUserId() && !superuser_arg(owner))
		{
			char	   *rolname = GetUserNameFromId(owner, true);

			reason = psprintf("Its owner is role \"%s\", neither the projector's role nor another superuser",
							  rolname ? rolname : "?");
		}
		else if (b[1])
			reason = "It publishes all tables (FOR ALL TABLES)";
		else if (b[4])
			reason = "It publishes the tables of a schema (FOR TABLES IN SCHEMA)";
		else if (b[5])
			reason = "It publishes tables other than es.events";
		else if (!b[2] || b[3])
			reason = "It does not publish inserts only";
		else if (b[7])
			reason = "It filters the rows or the columns of es.events";
		if (reason != NULL)
		{
			state = PUB_FOREIGN;
			*why = MemoryContextStrdup(cxt, reason);
		}
		else
			state = b[6] ? PUB_OURS : PUB_OURS_EMPTY;
	}
	SPI_finish();
	return state;
}

/*
 * Is the slot es_projector_<database oid> es's own, if it exists (*exists)?
 * Slot names are cluster-wide, and a role with the REPLICATION attribute
 * may create one of that name, in another database or with another output
 * plugin, whose output the decoder would misread.  es's own is a persistent
 * logical slot of this database that decodes with pgoutput, and no other
 * process uses it.  When it is not, *why says why.
 */
static bool
slot_is_ours(bool *exists, char **why)
{
	ReplicationSlot *slot;
	Oid			database = InvalidOid;
	NameData	plugin;
	ReplicationSlotPersistency persistency = RS_PERSISTENT;
	pid_t		active_pid = 0;

	*why = NULL;
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	slot = SearchNamedReplicationSlot(slot_name, false);
	*exists = slot != NULL;
	if (slot != NULL)
	{
		SpinLockAcquire(&slot->mutex);
		database = slot->data.database;
		plugin = slot->data.plugin;
		persistency = slot->data.persistency;
		active_pid = slot->active_pid;
		SpinLockRelease(&slot->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);

	if (!*exists)
		return true;
	if (!OidIsValid(database))
		*why = pstrdup("It is a physical slot");
	else if (database != MyDatabaseId)
		*why = psprintf("It was created in another database (OID %u)", database);
	else if (strcmp(NameStr(plugin), "pgoutput") != 0)
		*why = psprintf("It decodes with the output plugin \"%s\", not pgoutput",
						NameStr(plugin));
	else if (persistency != RS_PERSISTENT)
		*why = pstrdup("It is a temporary slot");
	else if (active_pid != 0 && active_pid != MyProcPid)
		*why = psprintf("It is in use by process %d", (int) active_pid);
	return *why == NULL;
}

/* The prefix of the last_error that says why the projector waits */
#define WAITING_PREFIX "waiting: "

/*
 * The notes in last_error, each behind a look that writes nothing (an
 * UPDATE of es.projections fires its statement trigger, which sends an
 * invalidation, even when no row changes).
 */
static KeptPlan waiting_note_check_plan = {
	"SELECT FROM ONLY es.projections"
	" WHERE mode OPERATOR(pg_catalog.=) 'async' AND failed_at IS NULL"
	"   AND (last_error IS NULL OR last_error OPERATOR(pg_catalog.<>) $1) LIMIT 1", NULL
};

static KeptPlan waiting_note_plan = {
	"UPDATE ONLY es.projections SET last_error = $1"
	" WHERE mode OPERATOR(pg_catalog.=) 'async' AND failed_at IS NULL"
	"   AND (last_error IS NULL OR last_error OPERATOR(pg_catalog.<>) $1)", NULL
};

static KeptPlan waiting_clear_check_plan = {
	"SELECT FROM ONLY es.projections"
	" WHERE mode OPERATOR(pg_catalog.=) 'async' AND failed_at IS NULL"
	"   AND pg_catalog.starts_with(last_error, $1) LIMIT 1", NULL
};

static KeptPlan waiting_clear_plan = {
	"UPDATE ONLY es.projections SET last_error = NULL"
	" WHERE mode OPERATOR(pg_catalog.=) 'async' AND failed_at IS NULL"
	"   AND pg_catalog.starts_with(last_error, $1)", NULL
};

/* Run "update" with the text "arg" when "check" finds a row.  In SPI. */
static void
update_if_needed(KeptPlan *check, KeptPlan *update, const char *arg)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(arg)};

	spi_run(check, 1, types, values, NULL, true);
	if (SPI_processed > 0)
		spi_run(update, 1, types, values, NULL, false);
}

/*
 * The publication or the slot is not es's own: use neither, drop neither
 * (it is somebody's), and wait until it is gone, looking again every few
 * seconds.  We choose waiting over failing the projections: nothing is
 * applied meanwhile, nothing twice either, and once an administrator has
 * dropped or renamed the object, the projector creates its own and goes on
 * by itself, with no projection to resume.  The server log says so (a
 * WARNING, again every few minutes), and so does last_error of every async
 * projection that has not failed (es.projection_status), until then.  In
 * a transaction.
 */
static void
projector_wait(const char *what, const char *why, const char *hint)
{
	TimestampTz now = GetCurrentTimestamp();

	if (waiting_for == NULL || strcmp(waiting_for, what) != 0 ||
		TimestampDifferenceExceeds(waiting_logged_at, now, HOLD_LOG_INTERVAL_MS))
	{
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("es projector: %s is not es's own; the async projections of database \"%s\" wait until it is gone",
						what, get_database_name(MyDatabaseId)),
				 errdetail("%s.", why),
				 errhint("%s", hint)));
		waiting_logged_at = now;
	}
	if (waiting_for != NULL)
		pfree((void *) waiting_for);
	waiting_for = MemoryContextStrdup(TopMemoryContext, what);
	attach_retry_at = TimestampTzPlusMilliseconds(now, 5000);

	SPI_connect();
	update_if_needed(&waiting_note_check_plan, &waiting_note_plan,
					 psprintf(WAITING_PREFIX "%s is not es's own. %s.", what, why));
	SPI_finish();
}

/* Waiting over (or never begun): forget it, in the log and in the catalog */
static void
projector_wait_done(void)
{
	if (waiting_for != NULL)
	{
		ereport(LOG,
				(errmsg("es projector: %s no longer stands in the way; the async projections go on",
						waiting_for)));
		pfree((void *) waiting_for);
		waiting_for = NULL;
	}
	attach_retry_at = 0;
	SPI_connect();
	update_if_needed(&waiting_clear_check_plan, &waiting_clear_plan, WAITING_PREFIX);
	SPI_finish();
}

static KeptPlan any_async_plan = {
	"SELECT FROM ONLY es.projections p"
	" WHERE p.mode OPERATOR(pg_catalog.=) 'async' LIMIT 1", NULL
};

static KeptPlan lost_list_plan = {
	"SELECT p.name, p.tables::pg_catalog.oid[] FROM ONLY es.projections p"
	" WHERE p.mode OPERATOR(pg_catalog.=) 'async' AND p.applied_lsn IS NOT NULL"
	" ORDER BY p.name FOR NO KEY UPDATE OF p", NULL
};

static KeptPlan lost_reset_plan = {
	"UPDATE ONLY es.projections"
	"   SET phase = 'rebuilding', failed_at = NULL, last_error = NULL,"
	"       last_error_position = NULL, caught_up_to = 0, last_position = 0,"
	"       applied_lsn = NULL, live_snapshot = NULL, live_snapshot_lsn = NULL,"
	"       last_applied_at = NULL,"
	"       catchup_target = (SELECT coalesce(pg_catalog.max(e.global_position), 0)"
	"                           FROM ONLY es.events e)"
	" WHERE name OPERATOR(pg_catalog.=) $1", NULL
};

static KeptPlan lost_errors_plan = {
	"DELETE FROM ONLY es.projection_errors e"
	" WHERE e.projection OPERATOR(pg_catalog.=) $1", NULL
};

/*
 * Live async projections without the slot they were following (a restored
 * dump, a slot dropped by hand or invalidated, a publication that lost
 * es.events) cannot know what they missed: rebuild them, as
 * es.rebuild_projection does, but here, in C, so that no role's rights
 * come into it but the tables' owners' (projection_truncate_as_owner): the
 * projector is a superuser, and es.rebuild_projection runs as the
 * extension's owner.  Paused ones stay paused.  Returns how many.  In a
 * transaction.
 */
static uint64
rebuild_lost(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *names = NIL;
	List	   *tables = NIL;
	ListCell   *ln;
	ListCell   *lt;
	uint64		i;

	SPI_connect();
	spi_run(&lost_list_plan, 0, NULL, NULL, NULL, false);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(cxt);
		List	   *oids = NIL;
		bool		isnull;
		Datum		d = SPI_getbinval(tup, desc, 2, &isnull);

		if (!isnull)
		{
			Datum	   *elems;
			bool	   *enulls;
			int			n;
			int			j;

			deconstruct_array(DatumGetArrayTypeP(d), OIDOID, sizeof(Oid), true,
							  TYPALIGN_INT, &elems, &enulls, &n);
			for (j = 0; j < n; j++)
				if (!enulls[j])
					oids = lappend_oid(oids, DatumGetObjectId(elems[j]));
		}
		names = lappend(names, SPI_getvalue(tup, desc, 1));
		tables = lappend(tables, oids);
		MemoryContextSwitchTo(old);
	}

	forboth(ln, names, lt, tables)
	{
		Oid			types[1] = {TEXTOID};
		Datum		values[1] = {CStringGetTextDatum(lfirst(ln))};
		ListCell   *lc;

		spi_run(&lost_reset_plan, 1, types, values, NULL, false);
		foreach(lc, (List *) lfirst(lt))
			projection_truncate_as_owner(lfirst_oid(lc), lfirst(ln));
		spi_run(&lost_errors_plan, 1, types, values, NULL, false);
	}
	SPI_finish();
	return list_length(names);
}

typedef enum AttachResult
{
	ATTACH_OK,
	ATTACH_NOTHING,				/* no async projection here: detach */
	ATTACH_WAIT					/* the publication or the slot is not ours */
} AttachResult;

/*
 * The slot: acquire it, or create it (and the publication first:
 * pgoutput looks it up as of each decoded commit), each only if it is es's
 * own (publication_state, slot_is_ours; otherwise projector_wait).  Live
 * projections without a slot are rebuilt (rebuild_lost); so are they when
 * es's publication lost es.events (pg_dump does not dump an extension
 * table's membership): commits were decoded without their events.
 */
static AttachResult
projector_attach(void)
{
	bool		any;
	PubState	pub = PUB_NONE;
	bool		slot_exists = false;
	bool		wait = false;
	int			guc_level;

	guc_level = projector_xact_begin("attaching");
	PushActiveSnapshot(GetTransactionSnapshot());
	any = extension_ready();
	if (any)
	{
		SPI_connect();
		spi_run(&any_async_plan, 0, NULL, NULL, NULL, true);
		any = SPI_processed > 0;
		SPI_finish();
	}
	if (any)
	{
		char	   *why = NULL;

		events_relid = es_relation_oid(ES_EVENTS);
		foreign_relation_logged = false;
		pub = publication_state(events_relid, &why);
		if (pub == PUB_FOREIGN)
			projector_wait("the publication \"es_events\"", why,
						   "Drop it (DROP PUBLICATION es_events) or rename it (ALTER PUBLICATION es_events RENAME TO ...): es creates and uses a publication es_events of its own.");
		else if (!slot_is_ours(&slot_exists, &why))
			projector_wait(psprintf("the replication slot \"%s\"", slot_name), why,
						   psprintf("Drop it (SELECT pg_drop_replication_slot('%s')): es creates and uses a slot of that name of its own.",
									slot_name));
		else
			projector_wait_done();
		wait = pub == PUB_FOREIGN || why != NULL;
	}
	PopActiveSnapshot();
	projector_xact_end(guc_level);
	if (!any)
		return ATTACH_NOTHING;
	if (wait)
		return ATTACH_WAIT;

	/*
	 * The server invalidated the slot: most often max_slot_wal_keep_size
	 * reached (a long pause), the WAL is gone.  Say which cause it was.
	 */
	if (slot_exists)
	{
		ReplicationSlot *slot = SearchNamedReplicationSlot(slot_name, true);
		const char *cause = NULL;

		if (slot != NULL)
			cause = ReplicationSlotInvalidationCause_compat(slot);
		if (cause != NULL)
		{
			ereport(WARNING,
					(errmsg("es projector: the replication slot \"%s\" was invalidated (%s); dropping it",
							slot_name, cause),
					 strcmp(cause, "wal_removed") == 0 ?
					 errdetail("It held more WAL than max_slot_wal_keep_size allows.") :
					 strcmp(cause, "idle_timeout") == 0 ?
					 errdetail("It was unused for longer than idle_replication_slot_timeout allows.") : 0));
			ReplicationSlotDrop(slot_name, true);
		}
	}

	if (pub != PUB_OURS && SearchNamedReplicationSlot(slot_name, true) != NULL)
	{
		ereport(WARNING,
				(errmsg("es projector: the publication es_events does not publish es.events; dropping the replication slot \"%s\"",
						slot_name)));
		ReplicationSlotDrop(slot_name, true);
	}

	if (SearchNamedReplicationSlot(slot_name, true) == NULL)
	{
		uint64		rebuilt;

		guc_level = projector_xact_begin("attaching");
		PushActiveSnapshot(GetTransactionSnapshot());
		rebuilt = rebuild_lost();
		if (rebuilt > 0)
			ereport(WARNING,
					(errmsg("es projector: no replication slot \"%s\" for live async projections; rebuilding %llu of them",
							slot_name, (unsigned long long) rebuilt)));
		SPI_connect();
		if (pub == PUB_NONE &&
			SPI_execute("CREATE PUBLICATION es_events FOR TABLE ONLY es.events (global_position)"
						" WITH (publish = 'insert')", false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "es projector: could not create the publication es_events");
		if (pub == PUB_OURS_EMPTY &&
			SPI_execute("ALTER PUBLICATION es_events ADD TABLE ONLY es.events (global_position)",
						false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "es projector: could not add es.events to the publication es_events");
		SPI_finish();
		PopActiveSnapshot();
		projector_xact_end(guc_level);

		guc_level = projector_xact_begin("attaching");
		PushActiveSnapshot(GetTransactionSnapshot());
		SPI_connect();
		if (SPI_execute(psprintf("SELECT pg_catalog.pg_create_logical_replication_slot(%s, 'pgoutput')",
								 quote_literal_cstr(slot_name)), false, 0) != SPI_OK_SELECT)
			elog(ERROR, "es projector: could not create the replication slot %s", slot_name);
		SPI_finish();
		PopActiveSnapshot();
		projector_xact_end(guc_level);
		ereport(LOG, (errmsg("es projector: created replication slot \"%s\"", slot_name)));
	}
	ReplicationSlotAcquire_compat(slot_name, true);
	/* held now, nobody can replace it: look once more, closing the window */
	if (MyReplicationSlot->data.database != MyDatabaseId ||
		strcmp(NameStr(MyReplicationSlot->data.plugin), "pgoutput") != 0)
	{
		ReplicationSlotRelease();
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("es projector: the replication slot \"%s\" was replaced by one that is not es's own",
						slot_name)));
	}
	decoding_start();
	return ATTACH_OK;
}

/*
 * Nothing to project: give the slot back and drop it, and the publication,
 * when they are es's own (somebody else's are left alone).
 */
static void
projector_detach(void)
{
	Oid			nsp;
	Oid			events = InvalidOid;
	PubState	pub;
	char	   *why = NULL;
	bool		slot_exists;
	int			guc_level;

	guc_level = projector_xact_begin("detaching");
	PushActiveSnapshot(GetTransactionSnapshot());
	/* es.events, unless DROP EXTENSION took it (and it from the publication) */
	nsp = get_namespace_oid("es", true);
	if (OidIsValid(nsp))
		events = get_relname_relid("events", nsp);
	pub = publication_state(events, &why);
	if (pub == PUB_OURS || pub == PUB_OURS_EMPTY)
	{
		SPI_connect();
		if (SPI_execute("DROP PUBLICATION es_events", false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "es projector: could not drop the publication es_events");
		SPI_finish();
	}
	PopActiveSnapshot();
	projector_xact_end(guc_level);

	decoding_stop();
	if (MyReplicationSlot != NULL)
	{
		ReplicationSlotRelease();
		ReplicationSlotDrop(slot_name, true);
		ereport(LOG, (errmsg("es projector: no async projection left; dropped replication slot \"%s\"",
							 slot_name)));
	}
	else if (slot_is_ours(&slot_exists, &why) && slot_exists)
		ReplicationSlotDrop(slot_name, true);
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
	decode_cxt = AllocSetContextCreate(TopMemoryContext, "es decoded",
									   ALLOCSET_DEFAULT_SIZES);

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
		if (decoded != NIL || woken || catching_pending ||
			decode_end - last_batch_end > RAISE_EVERY_BYTES ||
			/* a waiter wants a checkpoint past the last append */
			(!XLogRecPtrIsInvalid(active_floor) && active_floor < target &&
			 decode_end >= target) ||
			(holding_any && TimestampDifferenceExceeds(last_batch_at, now, 60 * 1000)))
		{
			r = run_batch(decode_end, &catching);
			decoded = NIL;
			decoded_events = 0;
			current = NULL;
			MemoryContextReset(decode_cxt);
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

PG_FUNCTION_INFO_V1(es_projection_apply_one);

/*
 * es._projection_apply_one(name, position): hand one event to a
 * projection's handler in this transaction (es.retry_projection_errors).
 */
Datum
es_projection_apply_one(PG_FUNCTION_ARGS)
{
	Projection *p = projection_get(PG_GETARG_TEXT_PP(0));
	int64		position = PG_GETARG_INT64(1);
	Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());
	int			found;

	(void) projection_event_desc_get(true);
	found = apply_positions(p, &position, 1, snap);
	UnregisterSnapshot(snap);
	PG_RETURN_BOOL(found == 1);
}
