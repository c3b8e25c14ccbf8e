/*-------------------------------------------------------------------------
 *
 * handler.c
 *	  Projections: loading their definitions, handing an upcast event to a
 *	  handler, inline projections (a trigger on es.events) and replays from
 *	  the table.
 *
 * A handler is handler(e es.event) RETURNS void.  It is called through a
 * cached FmgrInfo, as the owner of the handler function (so appenders and
 * the projector need no privilege on the read tables, and an administrator
 * who registers somebody's function does not lend it more rights than its
 * owner has).  The event it gets is upcast, and the projection's
 * event_types filter applies to the upcast type.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
#include "utils/typcache.h"

#include "es.h"
#include "read_int.h"

/* True while es.append* fires the inline trigger (see append.c) */
bool		projection_inline_firing = false;

/* The position of the event last handed to a handler (for error reports) */
int64		projection_current_position = 0;

/* Inline projections, cached per backend until es.projections changes */
static MemoryContext inline_cxt = NULL;
static List *inline_list = NIL;
static bool inline_valid = false;
static int	inline_depth = 0;	/* trigger calls in progress */
static Oid	projections_relid = InvalidOid;

/* The blessed descriptor of es.event, per backend */
static TupleDesc event_desc = NULL;
static char event_align;		/* its typalign */

/* Error context of a handler call */
typedef struct ApplyErrorContext
{
	const char *projection;
	int64		position;
	int64		first;			/* a batch: its first position */
	int			n;				/* events in the call */
} ApplyErrorContext;

static void
apply_error_callback(void *arg)
{
	ApplyErrorContext *c = arg;

	if (c->n > 1)
		errcontext("projection \"%s\", batch of %d events at global positions " INT64_FORMAT " to " INT64_FORMAT,
				   c->projection, c->n, c->first, c->position);
	else
		errcontext("projection \"%s\", event at global position " INT64_FORMAT,
				   c->projection, c->position);
}

/* es.projections changed (or everything was flushed) */
void
project_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == projections_relid)
		inline_valid = false;
}

/*
 * Some function changed: the cached handlers' owners (whom they run as) or
 * definitions may be stale (ALTER FUNCTION ... OWNER TO, in this session
 * too)
 */
void
project_proc_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	inline_valid = false;
}

/*
 * The descriptor of es.event.  Callers that start a batch of events pass
 * recheck, so that a type re-created by DROP and CREATE EXTENSION is
 * noticed.
 */
TupleDesc
projection_event_desc_get(bool recheck)
{
	if (event_desc != NULL && recheck && event_desc->tdtypeid != es_event_type_oid())
	{
		FreeTupleDesc(event_desc);
		event_desc = NULL;
	}
	if (event_desc == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		TupleDesc	desc = lookup_rowtype_tupdesc_copy(es_event_type_oid(), -1);

		MemoryContextSwitchTo(old);
		/* events are built with es.event's 9 attributes, no more */
		PG_TRY();
		{
			es_check_row_type(desc, ES_ROW_EVENT);
		}
		PG_CATCH();
		{
			FreeTupleDesc(desc);
			PG_RE_THROW();
		}
		PG_END_TRY();
		event_desc = BlessTupleDesc(desc);
		{
			int16		len;
			bool		byval;

			get_typlenbyvalalign(event_desc->tdtypeid, &len, &byval, &event_align);
		}
	}
	return event_desc;
}

TupleDesc
projection_event_desc(void)
{
	return projection_event_desc_get(false);
}

/* The alignment of es.event, as an element of an array */
static char
projection_event_align(void)
{
	(void) projection_event_desc_get(false);
	return event_align;
}

/*
 * A Projection from a row with the columns name, handler (as oid),
 * event_types, paused and proowner (the handler's owner), in "cxt".
 */
Projection *
projection_from_row(HeapTuple tup, TupleDesc desc, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Projection *p = palloc0(sizeof(Projection));
	bool		isnull;
	Datum		d;
	Oid		   *argtypes;
	int			nargs;

	p->name = SPI_getvalue(tup, desc, SPI_fnumber(desc, "name"));
	p->handler = DatumGetObjectId(SPI_getbinval(tup, desc, SPI_fnumber(desc, "handler"), &isnull));
	d = SPI_getbinval(tup, desc, SPI_fnumber(desc, "event_types"), &isnull);
	if (!isnull)
	{
		ArrayType  *arr = DatumGetArrayTypeP(d);
		Datum	   *elems;
		bool	   *enulls;
		int			n;
		int			j;

		deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &enulls, &n);
		for (j = 0; j < n; j++)
			p->types = lappend(p->types, TextDatumGetCString(elems[j]));
	}
	p->paused = DatumGetBool(SPI_getbinval(tup, desc, SPI_fnumber(desc, "paused"), &isnull));
	p->owner = DatumGetObjectId(SPI_getbinval(tup, desc, SPI_fnumber(desc, "proowner"), &isnull));
	p->search_path = SPI_getvalue(tup, desc, SPI_fnumber(desc, "search_path"));
	/* a batch handler takes es.event[] */
	p->batch = get_func_nargs(p->handler) == 1 &&
		get_array_type(es_event_type_oid()) != InvalidOid &&
		get_func_signature(p->handler, &argtypes, &nargs) != InvalidOid &&
		argtypes[0] == get_array_type(es_event_type_oid());
	fmgr_info_cxt(p->handler, &p->flinfo, cxt);
	MemoryContextSwitchTo(old);
	return p;
}

/*
 * Load projections of es.projections (all of one mode, or the one named)
 * into "cxt".  Read as the table's owner: the inline trigger runs as the
 * appender, who has no grant on it.
 */
List *
projection_load(const char *mode, const char *name, MemoryContext cxt)
{
	static const char *sql =
		"SELECT j.name, j.handler::pg_catalog.oid AS handler, j.event_types, j.paused,"
		" p.proowner, pg_catalog.to_jsonb(j) OPERATOR(pg_catalog.->>) 'search_path' AS search_path"
		" FROM ONLY es.projections j JOIN pg_catalog.pg_proc p"
		" ON p.oid OPERATOR(pg_catalog.=) j.handler::pg_catalog.oid"
		" WHERE ($1 IS NULL OR j.mode OPERATOR(pg_catalog.=) $1)"
		" AND ($2 IS NULL OR j.name OPERATOR(pg_catalog.=) $2)"
		" ORDER BY j.name";
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	EsUserCode	uc;
	List	   *result = NIL;
	uint64		i;
	int			rc;
	SPIPlanPtr	plan;

	values[0] = mode ? CStringGetTextDatum(mode) : (Datum) 0;
	nulls[0] = mode ? ' ' : 'n';
	values[1] = name ? CStringGetTextDatum(name) : (Datum) 0;
	nulls[1] = name ? ' ' : 'n';

	es_as_owner_begin(&uc, es_relation_oid(ES_PROJECTIONS));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "es: SPI_connect failed");
	/*
	 * The latest snapshot: an append that waited for create_projection's
	 * lock on es.events must see the row it committed.
	 */
	plan = SPI_prepare(sql, 2, types);
	if (plan == NULL)
		elog(ERROR, "es: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	rc = SPI_execute_snapshot(plan, values, nulls, GetLatestSnapshot(),
							  InvalidSnapshot, true, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "es: could not read es.projections: %s", SPI_result_code_string(rc));

	for (i = 0; i < SPI_processed; i++)
	{
		Projection *p = projection_from_row(SPI_tuptable->vals[i],
											SPI_tuptable->tupdesc, cxt);
		MemoryContext old = MemoryContextSwitchTo(cxt);

		result = lappend(result, p);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	es_usercode_end(&uc);
	return result;
}

/*
 * A batch of handler calls (an appended event, a replay, a projector
 * unit).  Each call runs with its projection's search_path
 * (call_handler), and the batch of one projection "p" sets that path
 * once, for all its calls (es_usercode_run_begin); an appended event's
 * batch, for several projections (p NULL), runs under search_path =
 * pg_catalog, pg_temp between the calls.  Returns the GUC nest level to
 * pass to handlers_end.
 */
int
handlers_begin(Projection *p)
{
	return p != NULL ? es_usercode_run_begin(p->search_path) : es_internal_begin();
}

/* The batch is done: the settings are the caller's again */
void
handlers_end(int level)
{
	es_internal_end(level);
}

/* Does the projection take events of this (upcast) type? */
static bool
projection_wants(Projection *p, HeapTuple event)
{
	ListCell   *lc;
	bool		isnull;
	text	   *type;
	int			len;

	if (p->types == NIL)
		return true;
	type = DatumGetTextPP(heap_getattr(event, READ_ATT_EVENT_TYPE,
									   projection_event_desc(), &isnull));
	len = VARSIZE_ANY_EXHDR(type);
	foreach(lc, p->types)
	{
		const char *want = lfirst(lc);

		if (strlen(want) == len && memcmp(want, VARDATA_ANY(type), len) == 0)
			return true;
	}
	return false;
}

/*
 * Build the (upcast) es.event of a stored row of es.events: its stored
 * bytes when it can be (read_stored_event), else formed from its values.
 * Call between upcast_begin and upcast_end.
 */
HeapTuple
projection_event_from_row(HeapTuple row, TupleDesc rowdesc)
{
	TupleDesc	desc = projection_event_desc();
	Size		len = read_stored_len(row, rowdesc->natts, read_stored_tail(rowdesc, desc));
	Datum		values[Natts_events];
	bool		nulls[Natts_events];

	if (len > 0)
		return upcast_tuple(read_stored_event(row, len, desc), desc);
	heap_deform_tuple(row, rowdesc, values, nulls);
	return upcast_tuple(heap_form_tuple(desc, values, nulls), desc);
}

/*
 * Call a projection's handler with "arg" (one es.event, or an es.event[]
 * of n events from "first" to "last"): as the handler's owner,
 * security-restricted, with the projection's search_path, its settings
 * rolled back when it returns (es_usercode_begin_path), within the
 * owner's timeouts (set by the projector; 0 inline).
 */
static void
call_handler(Projection *p, Datum arg, int n, int64 first, int64 last)
{
	LOCAL_FCINFO(fcinfo, 1);
	EsUserCode	uc;
	ApplyErrorContext c;
	ErrorContextCallback errcb;

	c.projection = p->name;
	c.first = first;
	c.position = last;
	c.n = n;
	errcb.callback = apply_error_callback;
	errcb.arg = &c;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	es_usercode_begin_path(&uc, p->owner, p->search_path);
	if (p->lock_timeout > 0)
	{
		char		ms[32];

		snprintf(ms, sizeof(ms), "%d", p->lock_timeout);
		/* over the projector's pinned 0, under the function's own SET
		 * clause; rolled back by es_usercode_end */
		(void) set_config_option("lock_timeout", ms, PGC_SUSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	}
	if (p->statement_timeout > 0)
		enable_timeout_after(STATEMENT_TIMEOUT, p->statement_timeout);
	InitFunctionCallInfoData(*fcinfo, &p->flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = arg;
	fcinfo->args[0].isnull = false;
	(void) FunctionCallInvoke(fcinfo);
	if (p->statement_timeout > 0)
		disable_timeout(STATEMENT_TIMEOUT, false);
	es_usercode_end(&uc);

	error_context_stack = errcb.previous;
}

static void batch_add(Projection *p, Datum event, int64 position);

/*
 * Hand one upcast event to a projection's handler (call_handler); a batch
 * handler's events are collected until projection_flush.  Returns false
 * when the projection's filter skips the event.
 */
bool
projection_apply(Projection *p, HeapTuple event)
{
	bool		isnull;
	int64		position;

	if (!projection_wants(p, event))
		return false;
	position = DatumGetInt64(heap_getattr(event, READ_ATT_GLOBAL_POSITION,
										  projection_event_desc(), &isnull));
	if (!p->batch)
	{
		call_handler(p, HeapTupleGetDatum(event), 1, position, position);
		return true;
	}
	batch_add(p, HeapTupleGetDatum(event), position);
	return true;
}

/*
 * A batch handler's events are collected as the es.event[] it gets: an
 * array of one dimension without nulls, its header first, then each
 * event's datum at es.event's alignment, as construct_md_array lays them
 * out.  Each event is copied once, into place (accumArrayResult, then
 * makeArrayResult, copied each twice: 16% of a batch handler's catch-up).
 */
#define BATCH_HEADER	ARR_OVERHEAD_NONULLS(1)
#define BATCH_FIRST_SIZE	(64 * 1024)

static void
batch_add(Projection *p, Datum event, int64 position)
{
	Pointer		ev = DatumGetPointer(event);
	Size		len = VARSIZE(ev);
	Size		start;

	if (p->acc == NULL)
	{
		if (p->acc_cxt == NULL)
			p->acc_cxt = AllocSetContextCreate(GetMemoryChunkContext(p),
											   "es batch handler events",
											   ALLOCSET_DEFAULT_SIZES);
		p->acc_size = Max(BATCH_FIRST_SIZE, BATCH_HEADER + MAXALIGN(len));
		p->acc = MemoryContextAllocZero(p->acc_cxt, p->acc_size);
		p->acc_len = BATCH_HEADER;
		p->acc_n = 0;
		p->acc_first = position;
	}
	if (p->acc_n >= (int) MaxArraySize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("array size exceeds the maximum allowed (%d)", (int) MaxArraySize)));
	start = att_align_nominal(p->acc_len, projection_event_align());
	if (start + len > p->acc_size)
	{
		Size		size = Max(p->acc_size * 2, start + len);

		if (!AllocSizeIsValid(size))
			size = start + len; /* repalloc says so if even that is too much */
		p->acc = repalloc(p->acc, size);
		p->acc_size = size;
	}
	memset(p->acc + p->acc_len, 0, start - p->acc_len);
	memcpy(p->acc + start, ev, len);
	p->acc_len = start + len;
	p->acc_n++;
	p->acc_last = position;
}

/*
 * A batch handler: call it with the events collected since the last flush,
 * in the order they were applied (commit order, or position order in a
 * replay), if there are any.  A no-op for the other handlers.
 */
void
projection_flush(Projection *p)
{
	ArrayType  *events;

	if (!p->batch || p->acc == NULL)
		return;
	events = (ArrayType *) p->acc;
	SET_VARSIZE(events, p->acc_len);
	events->ndim = 1;
	events->dataoffset = 0;
	events->elemtype = es_event_type_oid();
	ARR_DIMS(events)[0] = p->acc_n;
	ARR_LBOUND(events)[0] = 1;
	p->acc = NULL;
	call_handler(p, PointerGetDatum(events), p->acc_n, p->acc_first, p->acc_last);
	MemoryContextReset(p->acc_cxt);
}

/* Forget the events collected for a batch handler (its call failed) */
void
projection_flush_discard(Projection *p)
{
	p->acc = NULL;
	if (p->acc_cxt != NULL)
		MemoryContextReset(p->acc_cxt);
}

/*
 * Replay stored events after "from" and before "before" (0: no bound), at
 * most "limit" of them (0: all), in position order, as "snap" shows them,
 * into a projection; stop early, setting *timed_out, once "deadline" (0:
 * none) has passed.  Returns the last position read (or "from"); *count,
 * if given, gets how many were read.
 */
int64
projection_replay(Projection *p, int64 from, int64 before, int64 limit,
				  Snapshot snap, int64 *count, TimestampTz deadline, bool *timed_out)
{
	Relation	rel = table_open(es_relation_oid(ES_EVENTS), AccessShareLock);
	Relation	idx = index_open(es_relation_oid(ES_EVENTS_POSITION), AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	MemoryContext per_event = AllocSetContextCreate(CurrentMemoryContext,
													"es replay event",
													ALLOCSET_DEFAULT_SIZES);
	IndexScanDesc scan;
	ScanKeyData key[2];
	int64		last = from;
	int64		n = 0;
	int			guc_level;

	ScanKeyInit(&key[0], 1, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(from));
	ScanKeyInit(&key[1], 1, BTLessStrategyNumber, F_INT8LT,
				Int64GetDatum(before > 0 ? before : PG_INT64_MAX));
	scan = index_beginscan_compat(rel, idx, snap, 2, 0);
	index_rescan(scan, key, 2, NULL, 0);
	upcast_begin();
	(void) projection_event_desc_get(true);
	projection_flush_discard(p);
	guc_level = handlers_begin(p);
	while ((limit == 0 || n < limit) &&
		   index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		MemoryContext old = MemoryContextSwitchTo(per_event);
		bool		should_free;
		HeapTuple	row = ExecFetchSlotHeapTuple(slot, false, &should_free);
		bool		isnull;

		last = DatumGetInt64(heap_getattr(row, Anum_events_global_position,
										  RelationGetDescr(rel), &isnull));
		projection_current_position = last;
		projection_apply(p, projection_event_from_row(row, RelationGetDescr(rel)));
		n++;
		MemoryContextSwitchTo(old);
		MemoryContextReset(per_event);
		CHECK_FOR_INTERRUPTS();
		/* the clock every 16 events: a slow handler's unit ends soon after */
		if (deadline != 0 && n % 16 == 0 && GetCurrentTimestamp() >= deadline)
		{
			*timed_out = true;
			break;
		}
	}
	ExecClearTuple(slot);
	projection_flush(p);
	if (count)
		*count = n;
	handlers_end(guc_level);
	upcast_end();
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	MemoryContextDelete(per_event);
	index_close(idx, NoLock);
	table_close(rel, NoLock);
	return last;
}

/* One projection, by name, or an error */
Projection *
projection_get(text *name)
{
	char	   *cname = text_to_cstring(name);
	List	   *l = projection_load(NULL, cname, CurrentMemoryContext);

	if (l == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("projection \"%s\" does not exist", cname)));
	return linitial(l);
}

PG_FUNCTION_INFO_V1(es_projection_replay);

/*
 * es._projection_replay(name, from_position): the inline projection's
 * catch-up, run by create, resume and rebuild while they hold es.events in
 * SHARE mode, so that no append is in flight: the latest snapshot shows
 * every event that will not fire the trigger.
 */
Datum
es_projection_replay(PG_FUNCTION_ARGS)
{
	Projection *p = projection_get(PG_GETARG_TEXT_PP(0));
	Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());
	int64		last;

	last = projection_replay(p, PG_GETARG_INT64(1), 0, 0, snap, NULL, 0, NULL);
	UnregisterSnapshot(snap);
	PG_RETURN_INT64(last);
}

/* True when this database has inline projections that are not paused */
bool
projection_inline_active(void)
{
	ListCell   *lc;

	/* a handler's own append must not free the list its caller walks */
	if (!inline_valid && inline_depth == 0)
	{
		Oid			nsp = get_namespace_oid("es", true);

		if (inline_cxt == NULL)
			inline_cxt = AllocSetContextCreate(TopMemoryContext,
											   "es inline projections",
											   ALLOCSET_SMALL_SIZES);
		MemoryContextReset(inline_cxt);
		inline_list = NIL;
		/* before ALTER EXTENSION es UPDATE to 0.2.0 there are none */
		projections_relid = OidIsValid(nsp) ? get_relname_relid("projections", nsp) : InvalidOid;
		if (!OidIsValid(projections_relid))
			return false;
		inline_valid = true;
		(void) projection_event_desc_get(true);
		inline_list = projection_load("inline", NULL, inline_cxt);
	}
	foreach(lc, inline_list)
		if (!((Projection *) lfirst(lc))->paused)
			return true;
	return false;
}

PG_FUNCTION_INFO_V1(es_project_inline);

/*
 * AFTER INSERT row trigger on es.events: run the inline projections'
 * handlers on the new event, in the appending transaction.  Only events
 * appended by es.append* are projected: rows that arrive otherwise (a
 * restore's COPY) are history, which projections replay themselves.
 */
Datum
es_project_inline(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	HeapTuple	event;
	ListCell   *lc;
	int			guc_level;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("es.project_inline() must be called as a trigger")));
	if (!projection_inline_firing || !projection_inline_active())
		return PointerGetDatum(NULL);

	guc_level = handlers_begin(NULL);
	upcast_begin();
	event = projection_event_from_row(trigdata->tg_trigtuple,
									  RelationGetDescr(trigdata->tg_relation));
	inline_depth++;
	PG_TRY();
	{
		foreach(lc, inline_list)
		{
			Projection *p = lfirst(lc);

			if (!p->paused)
				projection_apply(p, event);
		}
	}
	PG_FINALLY();
	{
		inline_depth--;
	}
	PG_END_TRY();
	upcast_end();
	handlers_end(guc_level);
	return PointerGetDatum(NULL);
}

/*
 * Truncate a table of a projection being rebuilt (by es.rebuild_projection
 * or by the projector), as the table's owner, security-restricted, under
 * es's search_path: what the TRUNCATE runs (the table's TRUNCATE triggers,
 * a foreign table's wrapper) runs with the rights of that owner, who may
 * truncate the table anyway, never with the projector's or the extension
 * owner's (a superuser's).  The relation is locked by OID before its name
 * is read, so the name is its own until we commit.  A table dropped since
 * is skipped ("projection" names it in the warning).  In SPI.
 */
void
projection_truncate_as_owner(Oid relid, const char *projection)
{
	HeapTuple	tup;
	Form_pg_class form;
	Oid			owner;
	char	   *name;
	EsUserCode	uc;

	LockRelationOid(relid, AccessExclusiveLock);
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
	{
		UnlockRelationOid(relid, AccessExclusiveLock);
		ereport(WARNING,
				(errmsg("table %u of projection \"%s\" no longer exists; not truncated",
						relid, projection)));
		return;
	}
	form = (Form_pg_class) GETSTRUCT(tup);
	owner = form->relowner;
	name = quote_qualified_identifier(get_namespace_name(form->relnamespace),
									  NameStr(form->relname));
	ReleaseSysCache(tup);

	es_usercode_begin(&uc, owner);
	if (SPI_execute(psprintf("TRUNCATE TABLE %s", name), false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "es: could not truncate %s", name);
	es_usercode_end(&uc);
}

PG_FUNCTION_INFO_V1(es_truncate_as_owner);

/*
 * es._truncate_as_owner(table, projection): es._rebuild_projection's
 * TRUNCATE (projection_truncate_as_owner), so that the table's TRUNCATE
 * triggers do not run as the extension's owner, a superuser.
 */
Datum
es_truncate_as_owner(PG_FUNCTION_ARGS)
{
	int			guc_level = es_internal_begin();

	SPI_connect();
	projection_truncate_as_owner(PG_GETARG_OID(0), text_to_cstring(PG_GETARG_TEXT_PP(1)));
	SPI_finish();
	es_internal_end(guc_level);
	PG_RETURN_VOID();
}
