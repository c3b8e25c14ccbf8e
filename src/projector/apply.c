/*-------------------------------------------------------------------------
 *
 * apply.c
 *	  Applying: units of events handed to a projection's handler in a
 *	  subtransaction (by position, or a range of the table); on an error,
 *	  park the failing events or stop the projection; the live apply of a
 *	  decoded batch to every live projection in one transaction, after which
 *	  the slot is confirmed up to the oldest checkpoint.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "storage/lmgr.h"
#include "storage/procarray.h"
#include "utils/builtins.h"
#include "utils/timeout.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

#include "es.h"
#include "projector/projector.h"

/* ------------------------------------------------------------------------
 * Applying
 * ------------------------------------------------------------------------
 */

/* Does the projection's switch snapshot show this transaction? */
static bool
in_live_snapshot(AsyncProjection *ap, FullTransactionId fxid)
{
	if (ap->live_snapshot == (Datum) 0)
		return false;
	return DatumGetBool(DirectFunctionCall2(pg_visible_in_snapshot,
											FullTransactionIdGetDatum(fxid),
											ap->live_snapshot));
}

/*
 * Did the unit's deadline pass at the end of a transaction, the one whose
 * last event is positions[idx]?  *k: the transaction at or after idx.
 */
static bool
unit_ends_here(ApplyUnit *u, int idx, int *k)
{
	while (*k < u->nbounds && u->bounds[*k] <= idx)
		(*k)++;
	if (*k >= u->nbounds || u->bounds[*k] != idx + 1 || *k == u->nbounds - 1)
		return false;
	if (GetCurrentTimestamp() < u->deadline)
		return false;
	u->timed_out = true;
	u->done = idx + 1;
	return true;
}

/*
 * Hand the events at the unit's positions to its projection, as its
 * snapshot shows them; returns how many there were (an event scavenged
 * since is not).  With a deadline, stop at the end of the transaction
 * (u->bounds) during which it passed.
 */
static int
apply_positions(ApplyUnit *u)
{
	Projection *p = u->p;
	int64	   *positions = u->positions;
	int			n = u->n;
	Relation	rel = table_open(es_relation_oid(ES_EVENTS), AccessShareLock);
	Relation	idx = index_open(es_relation_oid(ES_EVENTS_POSITION), AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	MemoryContext per_event = AllocSetContextCreate(CurrentMemoryContext,
													"es projector event",
													ALLOCSET_DEFAULT_SIZES);
	IndexScanDesc scan = index_beginscan_compat(rel, idx, u->snap, 2, 0);
	int			guc_level;
	int			found = 0;
	int			i;
	int			j;
	int			k = 0;

	upcast_begin();
	projection_flush_discard(p);
	guc_level = handlers_begin(p);
	for (i = 0; i < n && !u->timed_out; i = j)
	{
		ScanKeyData key[2];

		/*
		 * A run of consecutive positions (the events of one transaction,
		 * and of transactions that committed one after the other) is one
		 * range scan; every position in it is one of ours.
		 */
		for (j = i + 1; j < n && positions[j] == positions[j - 1] + 1; j++)
			;
		ScanKeyInit(&key[0], 1, BTGreaterEqualStrategyNumber, F_INT8GE,
					Int64GetDatum(positions[i]));
		ScanKeyInit(&key[1], 1, BTLessEqualStrategyNumber, F_INT8LE,
					Int64GetDatum(positions[j - 1]));
		projection_current_position = positions[i];
		index_rescan(scan, key, 2, NULL, 0);
		while (index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			MemoryContext old = MemoryContextSwitchTo(per_event);
			bool		should_free;
			HeapTuple	row = ExecFetchSlotHeapTuple(slot, false, &should_free);
			bool		isnull;

			projection_current_position =
				DatumGetInt64(heap_getattr(row, Anum_events_global_position,
										   RelationGetDescr(rel), &isnull));
			projection_apply(p, projection_event_from_row(row, RelationGetDescr(rel)));
			MemoryContextSwitchTo(old);
			MemoryContextReset(per_event);
			ExecClearTuple(slot);
			found++;
			CHECK_FOR_INTERRUPTS();
			/* in a run, an event's index follows from its position */
			if (u->deadline != 0 &&
				unit_ends_here(u, i + (int) (projection_current_position - positions[i]), &k))
				break;
		}
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

bool
apply_unit(ApplyUnit *u)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool ok = true;
	bool		ended = projector_user_begin(u->p->search_path);

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		u->timed_out = false;
		if (u->positions != NULL)
			apply_positions(u);
		else
			u->last = projection_replay(u->p, u->from, u->before, u->limit,
										u->snap, &u->count, u->deadline, &u->timed_out);
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
	projector_user_end(ended);
	return ok;
}

/*
 * Did the unit fail because it was cancelled: a statement_timeout of the
 * handler, or pg_cancel_backend() on the projector?  That failure is the
 * event's at projection_current_position: the event is not run again to
 * find out (a handler that never returns would hold the projector again).
 */
bool
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
void
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

void
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
 * After a failed unit: apply one transaction of it on its own.  A
 * projection that stops on errors stops before it (its first failing
 * event, for a batch handler, is found for the report); one that parks
 * them applies its events one by one and parks the failing ones.
 * Returns false when the projection stopped.
 */
static bool
apply_live_xact(AsyncProjection *ap, DecodedXact *x, Snapshot snap,
				int64 cancelled, ApplyUnit *first)
{
	ApplyUnit	u = {.p = ap->p, .snap = snap,
	.positions = x->positions, .n = x->npositions};
	int64		at;
	int			i;

	if (ap->park)
	{
		for (i = 0; i < x->npositions; i++)
		{
			ApplyUnit	one = {.p = ap->p, .snap = snap,
			.positions = &x->positions[i], .n = 1};

			if (x->positions[i] == cancelled)
				park_event(ap, cancelled, first);
			else if (!apply_unit(&one))
				park_event(ap, x->positions[i], &one);
		}
		return true;
	}
	for (i = 0; cancelled != 0 && i < x->npositions; i++)
	{
		/* the cancelled event fails its transaction, once */
		if (x->positions[i] == cancelled)
		{
			stop_projection(ap, cancelled, first);
			return false;
		}
	}
	if (apply_unit(&u))
		return true;
	at = projection_current_position;
	if (ap->p->batch)
	{
		/* a batch handler: which event of x fails alone */
		ApplyUnit	alone = u;
		int64		pos = batch_failing_event(ap->p, x, snap, &alone);

		at = pos != 0 ? pos : x->positions[0];
		if (pos != 0)
			u = alone;
	}
	/* nothing of x stays applied; resume starts at x */
	stop_projection(ap, at, &u);
	return false;
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
	XLogRecPtr	prev_end;
	int64		cancelled;

	foreach(lc, decoded_xacts)
	{
		DecodedXact *x = lfirst(lc);

		if (x->end_lsn <= ap->applied_lsn || in_live_snapshot(ap, x->fxid))
			continue;
		/* a unit is about as long as a catch-up step: the rest is the next */
		if (total >= CATCHUP_BATCH)
		{
			decode_end = ((DecodedXact *) llast(pending))->end_lsn;
			break;
		}
		pending = lappend(pending, x);
		total += x->npositions;
	}
	/* after a restart the decoding may start behind the checkpoint */
	ap->new_applied_lsn = Max(ap->applied_lsn, decode_end);
	if (pending == NIL)
		return;
	ap->changed = true;

	/* first, all of it at once, or what a second allows (UNIT_TIME_MS) */
	memset(&u, 0, sizeof(u));
	u.p = ap->p;
	u.snap = snap;
	u.positions = palloc(sizeof(int64) * total);
	u.bounds = palloc(sizeof(int) * list_length(pending));
	u.deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), UNIT_TIME_MS);
	foreach(lc, pending)
	{
		DecodedXact *x = lfirst(lc);

		memcpy(u.positions + u.n, x->positions, sizeof(int64) * x->npositions);
		u.n += x->npositions;
		u.bounds[u.nbounds++] = u.n;
	}
	if (apply_unit(&u))
	{
		int			i;

		for (i = 0; i < (u.timed_out ? u.done : u.n); i++)
			ap->last_position = Max(ap->last_position, u.positions[i]);
		/* the rest is the next unit's */
		for (i = 0; u.timed_out && i < u.nbounds; i++)
			if (u.bounds[i] == u.done)
				ap->new_applied_lsn = ((DecodedXact *) list_nth(pending, i))->end_lsn;
		return;
	}

	/* an error: again, a transaction (stop) or an event (park) at a time */
	prev_end = ap->applied_lsn;
	cancelled = unit_cancelled(&u) ? projection_current_position : 0;
	foreach(lc, pending)
	{
		DecodedXact *x = lfirst(lc);
		int			i;

		if (!apply_live_xact(ap, x, snap, cancelled, &u))
		{
			ap->new_applied_lsn = prev_end;
			return;
		}
		for (i = 0; i < x->npositions; i++)
			ap->last_position = Max(ap->last_position, x->positions[i]);
		prev_end = x->end_lsn;
	}
}

/*
 * A projection worker's unit of a live projection "ap", whose row the
 * worker's transaction holds (as pick_projection read it): the logged
 * transactions it has not applied,
 * up to "upto" (what the projector has logged), in commit order, about
 * CATCHUP_BATCH events of them (apply_live); then its checkpoint.  Returns
 * true when it applied something.  In a transaction, with a snapshot taken
 * after "upto" was read.
 */
bool
apply_live_unit(AsyncProjection *ap, XLogRecPtr upto)
{
	XLogRecPtr	decode_end;
	bool		forget;

	if (ap == NULL || !is_live(ap) || !is_active(ap) || ap->applied_lsn >= upto)
		return false;
	(void) projection_event_desc_get(true);
	decode_end = decoded_load(ap->applied_lsn, upto, CATCHUP_BATCH);
	apply_live(ap, decode_end, GetActiveSnapshot());
	decoded_xacts = NIL;
	forget = ap->live_snapshot != (Datum) 0 &&
		ap->new_applied_lsn >= ap->live_snapshot_lsn;
	/* the worker took it for a reason (applier.c): store how far it got */
	if (ap->changed || ap->stopped || forget || ap->new_applied_lsn > ap->applied_lsn)
		save_checkpoint(ap, ap->changed, forget);
	return ap->changed;
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
	ApplyUnit	u = {.p = p, .positions = &position, .n = 1};
	int			found;

	u.snap = RegisterSnapshot(GetLatestSnapshot());
	(void) projection_event_desc_get(true);
	found = apply_positions(&u);
	UnregisterSnapshot(u.snap);
	PG_RETURN_BOOL(found == 1);
}
