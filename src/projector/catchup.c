/*-------------------------------------------------------------------------
 *
 * catchup.c
 *	  Catching up (the analogue of logical replication's tablesync): a
 *	  projection that joins late (created, rebuilt, lost its slot) reads
 *	  es.events in position order below the gap-safe horizon, then switches
 *	  to the decoded stream (see projector.h).
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/datum.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"

#include "es.h"
#include "projector/projector.h"

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

/* What a step's batch below the horizon leaves to do */
typedef enum CatchupNext
{
	CATCHUP_NONE,				/* gone, live, paused, failed, or stopped now */
	CATCHUP_MORE,				/* another batch */
	CATCHUP_SWITCH				/* near the head: the switch to live */
} CatchupNext;

/*
 * The projection "name", its row locked, if a catch-up step applies it:
 * NULL when it is gone, live, paused or failed, or when another
 * transaction holds its row (another worker's step: between the worker's
 * pick, which commits, and this lock, another worker may pick it too).
 */
static AsyncProjection *
catchup_load(const char *name)
{
	List	   *aps;
	AsyncProjection *ap;

	/* es.events before the projection's row, as DROP EXTENSION locks them */
	if (!extension_ready())
		return NULL;
	aps = load_projections(name, true);
	ap = aps != NIL ? linitial(aps) : NULL;
	if (ap == NULL || is_live(ap) || !is_active(ap))
		return NULL;
	return ap;
}

/*
 * Apply the events after caught_up_to that "snap" shows, below "before"
 * (0: all), at most "limit" (0: all), recovering from an error as
 * on_error says.  Returns the last position that counts as done; *more:
 * the limit was reached.
 */
static int64
catchup_apply(AsyncProjection *ap, Snapshot snap, int64 before, int limit, bool *more)
{
	ApplyUnit	u = {.p = ap->p, .snap = snap, .from = ap->caught_up_to,
	.before = before, .limit = limit};

	/* a step of a slow handler ends after a second: the others' rows are not held back */
	if (limit > 0)
		u.deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), UNIT_TIME_MS);
	(void) projection_event_desc_get(true);
	*more = false;
	if (!apply_unit(&u))
		return catchup_recover(ap, u.from, before, limit, snap, &u);
	*more = (limit > 0 && u.count >= limit) || u.timed_out;
	return u.last;
}

/* A batch below the gap-safe horizon, in a transaction of its own */
static CatchupNext
catchup_batch(const char *name, MemoryContext cxt)
{
	CatchupNext next = CATCHUP_NONE;
	AsyncProjection *ap;
	Snapshot	snap;
	int64		low;
	int64		last;
	bool		more;
	int			guc_level;

	MemoryContextSwitchTo(cxt);
	guc_level = projector_xact_begin(psprintf("es: catching up projection \"%s\"", name));
	MemoryContextSwitchTo(cxt);
	snap = horizon_snapshot(&low);
	PushActiveSnapshot(snap);
	ap = catchup_load(name);
	if (ap != NULL)
	{
		last = catchup_apply(ap, snap, low, CATCHUP_BATCH, &more);
		if (last != ap->caught_up_to || ap->stopped)
			state_caught_up(ap, last);
		next = more ? CATCHUP_MORE : ap->stopped ? CATCHUP_NONE : CATCHUP_SWITCH;
	}
	PopActiveSnapshot();
	UnregisterSnapshot(snap);
	projector_xact_end(guc_level);
	MemoryContextSwitchTo(TopMemoryContext);
	return next;
}

static KeptPlan current_snapshot_plan = {
	"SELECT pg_catalog.pg_current_snapshot(), pg_catalog.pg_current_wal_insert_lsn()", NULL
};

/*
 * S, the active snapshot as a pg_snapshot (copied into "cxt"), and the WAL
 * insert position read just after it (*s_lsn)
 */
static Datum
catchup_snapshot(MemoryContext cxt, XLogRecPtr *s_lsn)
{
	MemoryContext old;
	Datum		s;
	bool		isnull;

	SPI_connect();
	spi_run(&current_snapshot_plan, 0, NULL, NULL, NULL, true);
	s = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	*s_lsn = DatumGetLSN(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	old = MemoryContextSwitchTo(cxt);
	s = datumCopy(s, false, -1);
	MemoryContextSwitchTo(old);
	SPI_finish();
	return s;
}

/*
 * The switch to the decoded stream (see projector.h), in one transaction:
 * L0 first (see switch_begin), then the projection's row, then S; apply
 * what S shows after caught_up_to, and go live (unless it stopped).
 */
static void
catchup_switch(const char *name, MemoryContext cxt)
{
	AsyncProjection *ap;
	Datum		s;
	XLogRecPtr	s_lsn;
	int64		last;
	bool		more;
	int			guc_level;

	processed_upto = switch_begin();
	MemoryContextSwitchTo(cxt);
	guc_level = projector_xact_begin(psprintf("es: catching up projection \"%s\"", name));
	MemoryContextSwitchTo(cxt);

	/*
	 * The projection's row first: another worker's catch-up step may have
	 * held it, and what that step applied (below caught_up_to) must be
	 * shown by S.  So S is taken once the row is ours, after that step
	 * committed (a step that still holds it: this switch waits for a later
	 * pick).
	 */
	PushActiveSnapshot(GetTransactionSnapshot());
	ap = catchup_load(name);
	PopActiveSnapshot();
	PushActiveSnapshot(GetTransactionSnapshot());
	s = catchup_snapshot(cxt, &s_lsn);
	if (ap != NULL)
	{
		last = catchup_apply(ap, GetActiveSnapshot(), 0, 0, &more);
		if (ap->stopped)
			state_caught_up(ap, last);
		else
			state_go_live(ap, last, processed_upto, s, s_lsn);
	}
	PopActiveSnapshot();
	projector_xact_end(guc_level);
	switch_end();
	MemoryContextSwitchTo(TopMemoryContext);
}

/*
 * One step of a projection that reads the table: a batch below the
 * horizon, or, near the head, the switch to the decoded stream (see the
 * top of the file).  Returns true when it has more to read.
 */
bool
catchup_step(const char *name)
{
	MemoryContext step_cxt = AllocSetContextCreate(TopMemoryContext, "es projector catch-up",
												   ALLOCSET_DEFAULT_SIZES);
	CatchupNext next = catchup_batch(name, step_cxt);

	if (next == CATCHUP_SWITCH)
	{
		MemoryContextReset(step_cxt);
		catchup_switch(name, step_cxt);
	}
	MemoryContextDelete(step_cxt);
	return next == CATCHUP_MORE;
}
