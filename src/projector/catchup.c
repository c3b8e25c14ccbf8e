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

static KeptPlan current_snapshot_plan = {
	"SELECT pg_catalog.pg_current_snapshot(), pg_catalog.pg_current_wal_insert_lsn()", NULL
};

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
	List	   *aps;
	AsyncProjection *ap;
	Snapshot	snap;
	int64		low;
	int64		last;
	bool		more = false;
	ApplyUnit	u;
	int			guc_level;

	/* a batch below the horizon */
	guc_level = projector_xact_begin(psprintf("es: catching up projection \"%s\"", name));
	MemoryContextSwitchTo(step_cxt);
	snap = horizon_snapshot(&low);
	PushActiveSnapshot(snap);
	aps = load_projections(name, true);
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
		state_caught_up(ap, last);
	PopActiveSnapshot();
	UnregisterSnapshot(snap);
	projector_xact_end(guc_level);
	MemoryContextSwitchTo(TopMemoryContext);

	if (more || ap->stopped)
	{
		MemoryContextDelete(step_cxt);
		return more;
	}

	/* the switch: L0 first (see switch_begin), then S */
	MemoryContextReset(step_cxt);
	processed_upto = switch_begin();
	guc_level = projector_xact_begin(psprintf("es: catching up projection \"%s\"", name));
	MemoryContextSwitchTo(step_cxt);

	/*
	 * The projection's row first: another worker's catch-up step may hold
	 * it, and what that step applies (below caught_up_to) must be shown by
	 * S.  So S is taken once the row is ours, after that step committed.
	 */
	PushActiveSnapshot(GetTransactionSnapshot());
	aps = load_projections(name, true);
	PopActiveSnapshot();
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

		ap = aps != NIL ? linitial(aps) : NULL;
		if (ap != NULL && !is_live(ap) && is_active(ap))
		{
			(void) projection_event_desc_get(true);
			memset(&u, 0, sizeof(u));
			u.p = ap->p;
			u.snap = GetActiveSnapshot();
			u.from = ap->caught_up_to;
			if (apply_unit(&u))
				state_go_live(ap, u.last, processed_upto, s, s_lsn);
			else
			{
				last = catchup_recover(ap, u.from, 0, 0, u.snap, &u);
				if (ap->stopped)
					state_caught_up(ap, last);
				else
					state_go_live(ap, last, processed_upto, s, s_lsn);
			}
		}
	}
	PopActiveSnapshot();
	projector_xact_end(guc_level);
	switch_end();
	MemoryContextSwitchTo(TopMemoryContext);
	MemoryContextDelete(step_cxt);
	return false;
}
