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

static List *holding_logged = NIL;	/* names said to hold WAL */
static TimestampTz holding_logged_at = 0;
static TimestampTz slot_saved_at = 0;

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

bool
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

	foreach(lc, decoded_xacts)
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
 * Apply the decoded batch (possibly empty) to the live projections in one
 * transaction, then confirm the slot.  *catching gets the names of the
 * projections that still read the table.
 */
BatchResult
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
	foreach(lc, decoded_xacts)
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
