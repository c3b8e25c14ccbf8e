/*-------------------------------------------------------------------------
 *
 * applier.c
 *	  The projection workers of a database (es.max_projection_workers of
 *	  them, started by its projector): each takes, in turn, an async
 *	  projection that has work and that no other worker holds, applies one
 *	  unit of it (what the projector logged since its checkpoint, or a step
 *	  of its catch-up) in a transaction that holds the projection's row,
 *	  and takes the next one.  A slow or stuck handler holds its own
 *	  projection's row, and one worker; the other workers skip that row
 *	  (SKIP LOCKED) and go on with the other projections, and the
 *	  projector starts another worker in place of the held one
 *	  (workers_needed).
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"

#include "es.h"
#include "projector/projector.h"

static int	my_index = -1;		/* my slot in my_db->workers */

/* ------------------------------------------------------------------------
 * Starting them (in the projector)
 * ------------------------------------------------------------------------
 */

/*
 * How many workers the database needs: one per active projection, at most
 * es.max_projection_workers, and one more for each worker held in a long
 * unit (a slow or stuck handler, a long catch-up step; at most
 * es.max_projection_workers more), so that a held worker is not taken from
 * the other projections.  A slow projection is between two units only for
 * a moment: the extra workers stay until none has been held for
 * HELD_KEEP_MS.  In the projector; the workers above it exit.
 */
static int
workers_needed(TimestampTz now)
{
	static int	extra = 0;
	static TimestampTz extra_since = 0;
	int			held = 0;
	int			active;
	int			i;

	SpinLockAcquire(&projector->mutex);
	active = my_db->active;
	for (i = 0; i < MAX_PROJECTION_WORKERS; i++)
	{
		ProjectionWorkerSlot *w = &my_db->workers[i];

		if (w->pid != 0 && w->unit_start != 0 &&
			TimestampDifferenceExceeds(w->unit_start, now, HELD_AFTER_MS))
			held++;
	}
	SpinLockRelease(&projector->mutex);

	held = Min(held, es_max_projection_workers);
	if (held >= extra || TimestampDifferenceExceeds(extra_since, now, HELD_KEEP_MS))
	{
		extra = held;
		extra_since = now;
	}
	return Min(Min(active, es_max_projection_workers + extra), MAX_PROJECTION_WORKERS);
}

/*
 * Start the workers of the database that are not running (the slots
 * below workers_needed), not before a crashed one's restart time.
 * "handles" are the projector's, by slot: a worker registered but not yet
 * in its slot is not started twice.
 */
void
projection_workers_start(BackgroundWorkerHandle **handles)
{
	TimestampTz now = GetCurrentTimestamp();
	int			wanted = workers_needed(now);
	int			i;

	SpinLockAcquire(&projector->mutex);
	my_db->workers_wanted = wanted;
	SpinLockRelease(&projector->mutex);
	for (i = 0; i < wanted; i++)
	{
		BackgroundWorker worker;
		pid_t		pid;
		TimestampTz restart_at;

		SpinLockAcquire(&projector->mutex);
		pid = my_db->workers[i].pid;
		restart_at = my_db->workers[i].restart_at;
		SpinLockRelease(&projector->mutex);
		if (pid != 0)
			continue;
		if (handles[i] != NULL)
		{
			pid_t		started;
			BgwHandleStatus status = GetBackgroundWorkerPid(handles[i], &started);

			if (status == BGWH_NOT_YET_STARTED || status == BGWH_STARTED)
				continue;
			pfree(handles[i]);
			handles[i] = NULL;
		}
		if (restart_at > now)
			continue;

		projector_bgworker_init(&worker, "es_projection_worker_main", "es projection worker");
		snprintf(worker.bgw_name, BGW_MAXLEN, "es projection worker %d for database %u",
				 i + 1, MyDatabaseId);
		worker.bgw_main_arg = ObjectIdGetDatum(MyDatabaseId);
		memcpy(worker.bgw_extra, &i, sizeof(i));
		worker.bgw_notify_pid = MyProcPid;
		if (!RegisterDynamicBackgroundWorker(&worker, &handles[i]))
		{
			ereport(WARNING,
					(errmsg("es projector: could not start projection worker %d of database \"%s\"; retrying in 5 seconds",
							i + 1, my_db_name),
					 errhint("Raise max_worker_processes, or lower es.max_projection_workers.")));
			handles[i] = NULL;
			SpinLockAcquire(&projector->mutex);
			my_db->workers[i].restart_at = TimestampTzPlusMilliseconds(now, 5000);
			SpinLockRelease(&projector->mutex);
		}
	}
}

/* ------------------------------------------------------------------------
 * A worker
 * ------------------------------------------------------------------------
 */

static void
projection_worker_exit(int code, Datum arg)
{
	SpinLockAcquire(&projector->mutex);
	if (my_db != NULL && my_index >= 0 && my_db->workers[my_index].pid == MyProcPid)
	{
		my_db->workers[my_index].pid = 0;
		my_db->workers[my_index].latch = NULL;
		my_db->workers[my_index].switching_at = InvalidXLogRecPtr;
		my_db->workers[my_index].unit_start = 0;
		/* after an error: the projector starts it again, a little later */
		my_db->workers[my_index].restart_at = code == 0 ? 0 :
			TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 5000);
	}
	SpinLockRelease(&projector->mutex);
}

/*
 * A projection that catches up switches to live at L0, what the projector
 * has logged (catchup.c).  From then on it needs the decoded transactions
 * after L0: the projector must not confirm its slot (nor remove logged
 * batches) past L0, yet it may not see the switch's commit in the
 * snapshot with which it looks at the live checkpoints.  So the switch
 * announces its L0 here first, until it has committed (or its worker has
 * exited), and the projector never goes past an announced L0, nor past
 * what it had logged before it looked (decoder_batch): a switch that
 * starts after that look has an L0 at least as far.
 */
XLogRecPtr
switch_begin(void)
{
	XLogRecPtr	l0;

	SpinLockAcquire(&projector->mutex);
	l0 = my_db->decoded_upto;
	my_db->workers[my_index].switching_at = l0;
	SpinLockRelease(&projector->mutex);
	return l0;
}

void
switch_end(void)
{
	SpinLockAcquire(&projector->mutex);
	my_db->workers[my_index].switching_at = InvalidXLogRecPtr;
	SpinLockRelease(&projector->mutex);
}

/* Go on while the projector runs and this slot is wanted */
static bool
projection_worker_wanted(void)
{
	bool		wanted;

	SpinLockAcquire(&projector->mutex);
	wanted = my_db->pid != 0 && !my_db->dropping && my_index < my_db->workers_wanted;
	SpinLockRelease(&projector->mutex);
	return wanted;
}

/*
 * One unit of one projection.  Returns true when there may be more work
 * (a projection was found).
 */
static bool
projection_worker_step(void)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "es projection worker unit",
											  ALLOCSET_DEFAULT_SIZES);
	XLogRecPtr	upto;
	XLogRecPtr	logged;
	XLogRecPtr	target;
	AsyncProjection *ap = NULL;
	char	   *name = NULL;
	bool		live = false;
	int			guc_level;
	TimestampTz start = GetCurrentTimestamp();

	/* read before the snapshot: everything logged up to it is visible */
	SpinLockAcquire(&projector->mutex);
	my_db->workers[my_index].unit_start = start;
	upto = my_db->decoded_upto;
	logged = my_db->logged_upto;
	target = my_db->last_append_end;
	SpinLockRelease(&projector->mutex);
	/* nothing decoded yet since the server started: wait for the projector */
	if (XLogRecPtrIsInvalid(upto))
	{
		SpinLockAcquire(&projector->mutex);
		my_db->workers[my_index].unit_start = 0;
		SpinLockRelease(&projector->mutex);
		MemoryContextDelete(cxt);
		return false;
	}

	guc_level = projector_xact_begin("looking for work");
	MemoryContextSwitchTo(cxt);
	PushActiveSnapshot(GetTransactionSnapshot());
	if (extension_ready())
		ap = pick_projection(upto, target, logged);
	if (ap != NULL)
	{
		name = pstrdup(ap->p->name);
		live = is_live(ap);
	}
	if (live)
	{
		pgstat_report_activity(STATE_RUNNING,
							   psprintf("es: applying projection \"%s\"", name));
		(void) apply_live_unit(ap, upto);
	}
	PopActiveSnapshot();
	projector_xact_end(guc_level);
	MemoryContextSwitchTo(TopMemoryContext);

	/* a catch-up takes its own transactions (catchup.c) */
	if (name != NULL && !live)
	{
		processed_upto = upto;
		(void) catchup_step(name);
	}
	SpinLockAcquire(&projector->mutex);
	my_db->workers[my_index].unit_start = 0;
	SpinLockRelease(&projector->mutex);
	MemoryContextDelete(cxt);
	return name != NULL;
}

void
es_projection_worker_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	memcpy(&my_index, MyBgworkerEntry->bgw_extra, sizeof(my_index));
	SpinLockAcquire(&projector->mutex);
	my_db = projector_db(dboid, false, InvalidXLogRecPtr);
	if (my_db == NULL || my_db->dropping || my_index < 0 ||
		my_index >= MAX_PROJECTION_WORKERS || my_db->workers[my_index].pid != 0)
	{
		my_db = NULL;
		SpinLockRelease(&projector->mutex);
		proc_exit(0);
	}
	my_db->workers[my_index].pid = MyProcPid;
	my_db->workers[my_index].latch = MyLatch;
	my_db->workers[my_index].restart_at = 0;
	my_db->workers[my_index].switching_at = InvalidXLogRecPtr;
	my_db->workers[my_index].unit_start = 0;
	SpinLockRelease(&projector->mutex);
	before_shmem_exit(projection_worker_exit, (Datum) 0);

	/* the server's values, before the database's and the role's apply */
	server_statement_timeout = StatementTimeout;
	server_lock_timeout = LockTimeout;
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	projector_pin_settings(true, "es projection worker");

	for (;;)
	{
		bool		more;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (!projection_worker_wanted())
			proc_exit(0);
		stats_flush_idle();
		ResetLatch(MyLatch);
		/* a handler cannot change them for good, but check */
		projector_pin_settings(false, "es projection worker");

		more = projection_worker_step();
		if (!more)
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 1000L, PG_WAIT_EXTENSION);
	}
}
