/*-------------------------------------------------------------------------
 *
 * read.c
 *	  es.read_stream, es.read_all, es.read_category, es.stream_version,
 *	  es.last_event.
 *
 * Every read runs one of the cached plans below through SPI, under the
 * pinned search_path: read_events() for the set-returning reads,
 * read_stream_each() for es.fold, es_last_event() and the stream version;
 * each event leaves the store through upcast_tuple().  Global and category
 * reads are gap-safe: they read with a snapshot taken together with the
 * horizon of horizon.c and stop below it.  Without preload there is no
 * horizon, and they fall back to reading only events whose transaction is
 * below the snapshot's xmin.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "es.h"
#include "read_int.h"

#define READ_BATCH	100

#define READ_COLUMNS \
	"global_position, stream_id, stream_version, event_id, event_type, " \
	"schema_version, data, metadata, recorded_at"


static SPIPlanPtr read_plans[READ_NPLANS];


/*
 * Gap-safe reads with preload stop below $2 (the horizon).  Without preload
 * the _XMIN variants keep only events whose transaction is below the xmin of
 * the statement's snapshot (an InitPlan, computed once).  A visible event
 * whose xid is at or above the snapshot's xmax cannot come from this
 * cluster's transactions: it was restored from a dump of another cluster,
 * and is committed, so it is returned too.
 */
#define XMIN_RULE \
	" AND (xid OPERATOR(pg_catalog.<) (SELECT pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot()))" \
	" OR xid OPERATOR(pg_catalog.>=) (SELECT pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())))"

/* Events hidden by a delete or retention (only when some stream has a row) */
#define HIDDEN_RULE(p) \
	" AND (" p " IS NOT TRUE OR NOT EXISTS (SELECT 1 FROM ONLY es.stream_metadata m " \
	"WHERE m.stream_id OPERATOR(pg_catalog.=) events.stream_id " \
	"AND es.event_hidden(m, events.stream_version, events.recorded_at)))"

/*
 * The plans are prepared and run under search_path = pg_catalog, pg_temp
 * (es_internal_begin), and name every type, function and operator with its
 * schema besides: nothing in them resolves through the caller's names.
 */
#define ALL_QUERY(rule) \
	"SELECT " READ_COLUMNS " FROM ONLY es.events " \
	"WHERE global_position OPERATOR(pg_catalog.>) $1" \
	" AND global_position OPERATOR(pg_catalog.<) $2" rule \
	" AND ($3::pg_catalog.text[] IS NULL OR event_type OPERATOR(pg_catalog.=) ANY ($3))" \
	HIDDEN_RULE("$5::pg_catalog.bool") \
	" ORDER BY global_position LIMIT $4"

#define CATEGORY_QUERY(rule) \
	"SELECT " READ_COLUMNS " FROM ONLY es.events " \
	"WHERE pg_catalog.split_part(stream_id, '-', 1) OPERATOR(pg_catalog.=) $5 " \
	"AND global_position OPERATOR(pg_catalog.>) $1" \
	" AND global_position OPERATOR(pg_catalog.<) $2" rule \
	" AND ($7::pg_catalog.int4 IS NULL OR " \
	"(pg_catalog.hashtextextended(stream_id, 0) OPERATOR(pg_catalog.&) 9223372036854775807)" \
	" OPERATOR(pg_catalog.%) $7 OPERATOR(pg_catalog.=) $6)" \
	HIDDEN_RULE("$8::pg_catalog.bool") " ORDER BY global_position LIMIT $4"

#define STREAM_QUERY(order) \
	"SELECT " READ_COLUMNS " FROM ONLY es.events " \
	"WHERE stream_id OPERATOR(pg_catalog.=) $1 AND stream_version OPERATOR(pg_catalog.>=) $2 " \
	"AND ($3::pg_catalog.timestamptz IS NULL OR recorded_at OPERATOR(pg_catalog.<=) $3) " \
	"AND ($5::pg_catalog.timestamptz IS NULL OR recorded_at OPERATOR(pg_catalog.>=) $5) " \
	"ORDER BY stream_version" order " LIMIT $4"

/* SQL text and argument types of each plan */
static const struct
{
	const char *sql;
	int			nargs;
	Oid			types[8];
}			read_plan_defs[READ_NPLANS] =
{
	[READ_STREAM_FORWARD] = {
		STREAM_QUERY(""),
		5, {TEXTOID, INT8OID, TIMESTAMPTZOID, INT8OID, TIMESTAMPTZOID}
	},
	[READ_STREAM_BACKWARD] = {
		STREAM_QUERY(" DESC"),
		5, {TEXTOID, INT8OID, TIMESTAMPTZOID, INT8OID, TIMESTAMPTZOID}
	},
	[READ_ALL] = {ALL_QUERY(""), 5, {INT8OID, INT8OID, TEXTARRAYOID, INT8OID, BOOLOID}},
	[READ_ALL_XMIN] = {ALL_QUERY(XMIN_RULE), 5, {INT8OID, INT8OID, TEXTARRAYOID, INT8OID, BOOLOID}},
	[READ_CATEGORY] = {
		CATEGORY_QUERY(""), 8,
		{INT8OID, INT8OID, TEXTARRAYOID, INT8OID, TEXTOID, INT4OID, INT4OID, BOOLOID}
	},
	[READ_CATEGORY_XMIN] = {
		CATEGORY_QUERY(XMIN_RULE), 8,
		{INT8OID, INT8OID, TEXTARRAYOID, INT8OID, TEXTOID, INT4OID, INT4OID, BOOLOID}
	},
	[READ_LAST_EVENT] = {
		"SELECT " READ_COLUMNS " FROM ONLY es.events "
		"WHERE stream_id OPERATOR(pg_catalog.=) $1 "
		"AND ($2::pg_catalog.text[] IS NULL OR event_type OPERATOR(pg_catalog.=) ANY ($2)) "
		"AND stream_version OPERATOR(pg_catalog.>=) $4 "
		"AND ($5::pg_catalog.timestamptz IS NULL OR recorded_at OPERATOR(pg_catalog.>=) $5) "
		"ORDER BY stream_version DESC LIMIT $3",
		5, {TEXTOID, TEXTARRAYOID, INT8OID, INT8OID, TIMESTAMPTZOID}
	},
};

/* A cached plan, prepared on first use (inside SPI) */
static SPIPlanPtr
read_plan(ReadPlan which)
{
	if (read_plans[which] == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(read_plan_defs[which].sql,
									   read_plan_defs[which].nargs,
									   (Oid *) read_plan_defs[which].types);

		if (plan == NULL)
			elog(ERROR, "es: SPI_prepare failed: %s",
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "es: SPI_keepplan failed");
		read_plans[which] = plan;
	}
	return read_plans[which];
}

/* Check a stream id argument of a read function */
text *
read_stream_id_arg(FunctionCallInfo fcinfo, int argno)
{
	text	   *stream_id;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream_id must not be null")));
	stream_id = PG_GETARG_TEXT_PP(argno);
	if (VARSIZE_ANY_EXHDR(stream_id) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stream_id must not be empty")));
	return stream_id;
}

/* max_count: NULL means no limit; negative is an error */
Datum
read_max_count_arg(FunctionCallInfo fcinfo, int argno, char *null)
{
	int64		max_count;

	*null = ' ';
	if (PG_ARGISNULL(argno))
	{
		*null = 'n';
		return (Datum) 0;
	}
	max_count = PG_GETARG_INT64(argno);
	if (max_count < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_count must not be negative, not " INT64_FORMAT, max_count)));
	return Int64GetDatum(max_count);
}

/* True when the event type of an (upcast) event row is one of "types" */
static bool
read_type_wanted(HeapTuple tuple, TupleDesc desc, List *types)
{
	bool		isnull;
	text	   *type = DatumGetTextPP(heap_getattr(tuple, READ_ATT_EVENT_TYPE, desc, &isnull));
	int			len = VARSIZE_ANY_EXHDR(type);
	ListCell   *lc;

	foreach(lc, types)
	{
		const char *name = lfirst(lc);

		if ((int) strlen(name) == len && memcmp(name, VARDATA_ANY(type), len) == 0)
			return true;
	}
	return false;
}

/*
 * Run a read plan and return its events as the function's result set.
 * "snapshot" is the snapshot to read with, or NULL for the statement's.
 *
 * With "post_types", a gap-safe read (values[0] the position to read after,
 * values[3] the limit) keeps only events whose type after upcasting is one
 * of them: it reads on past what it drops until it has "limit" events (-1:
 * no limit) or there are no more, so a short page always means the end.
 */
void
read_events(FunctionCallInfo fcinfo, ReadPlan which, Datum *values,
			char *nulls, Snapshot snapshot, List *post_types, int64 limit)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		emitted = 0;
	bool		more = true;
	MemoryContext per_event;
	MemoryContext old;
	int			guc_level;

	read_materialize(fcinfo);
	es_check_row_type(rsinfo->setDesc, ES_ROW_EVENT);
	per_event = AllocSetContextCreate(CurrentMemoryContext, "es read event",
									  ALLOCSET_DEFAULT_SIZES);

	guc_level = es_internal_begin();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "es: SPI_connect failed");
	if (snapshot)
		PushActiveSnapshot(snapshot);

	while (more)
	{
		Portal		portal;
		uint64		fetched = 0;
		int64		last_position = 0;

		if (post_types != NIL && limit >= 0)
		{
			values[3] = Int64GetDatum(limit - emitted);
			nulls[3] = ' ';
		}
		portal = SPI_cursor_open(NULL, read_plan(which), values, nulls, true);
		for (;;)
		{
			uint64		i;

			SPI_cursor_fetch(portal, true, READ_BATCH);
			if (SPI_processed == 0)
				break;
			fetched += SPI_processed;
			for (i = 0; i < SPI_processed; i++)
			{
				HeapTuple	tuple = SPI_tuptable->vals[i];
				TupleDesc	desc = SPI_tuptable->tupdesc;

				/* events leave the store here, in their newest shape */
				if (post_types != NIL)
				{
					bool		isnull;

					last_position = DatumGetInt64(heap_getattr(tuple, READ_ATT_GLOBAL_POSITION,
															   desc, &isnull));
				}
				/* upcasting allocates per event: in a context reset per event */
				old = MemoryContextSwitchTo(per_event);
				tuple = upcast_tuple(tuple, desc);
				if (post_types == NIL || read_type_wanted(tuple, desc, post_types))
				{
					tuplestore_puttuple(rsinfo->setResult, tuple);
					emitted++;
				}
				MemoryContextSwitchTo(old);
				MemoryContextReset(per_event);
			}
			SPI_freetuptable(SPI_tuptable);
		}
		SPI_cursor_close(portal);

		/* read on only when events were dropped and a limit is not reached */
		more = post_types != NIL && limit >= 0 && fetched > 0 && emitted < limit;
		values[0] = Int64GetDatum(last_position);
	}

	if (snapshot)
		PopActiveSnapshot();
	SPI_finish();
	es_internal_end(guc_level);
	MemoryContextDelete(per_event);
}

/*
 * May a read of a stream read es.events directly, through its primary key?  The
 * caller needs SELECT on the table, as the query would check; with only
 * column privileges, or row security on the table, the query runs instead
 * (through SPI), which applies them.
 */
static bool
read_direct_ok(Oid relid)
{
	return pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) == ACLCHECK_OK &&
		check_enable_rls(relid, InvalidOid, true) != RLS_ENABLED;
}

/*
 * The version of a stream's last stored event visible to the statement's
 * snapshot, 0 when none, read directly from the primary key: the first
 * visible entry of a backward scan of its (stream_id, stream_version) keys.
 */
static int64
read_last_version_direct(Oid relid, text *stream_id)
{
	Relation	rel = table_open(relid, AccessShareLock);
	Relation	index = index_open(es_relation_oid(ES_EVENTS_PKEY), AccessShareLock);
	IndexScanDesc scan;
	ScanKeyData key;
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	int64		version = 0;

	ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_TEXTEQ,
						   PointerGetDatum(stream_id));
	scan = index_beginscan_compat(rel, index, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	if (index_getnext_slot(scan, BackwardScanDirection, slot))
	{
		bool		isnull;

		version = DatumGetInt64(slot_getattr(slot, Anum_events_stream_version, &isnull));
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(rel, AccessShareLock);
	return version;
}

/* The version of a stream's last stored event, 0 when none */
static int64
read_last_stored_version(text *stream_id)
{
	Datum		values[5];
	char		nulls[5] = {' ', 'n', ' ', ' ', 'n'};
	int64		version = 0;
	int			guc_level;
	Oid			relid = es_relation_oid(ES_EVENTS);

	if (read_direct_ok(relid))
		return read_last_version_direct(relid, stream_id);

	values[0] = PointerGetDatum(stream_id);
	values[1] = values[4] = (Datum) 0;
	values[2] = Int64GetDatum(1);
	values[3] = Int64GetDatum(0);

	guc_level = es_internal_begin();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "es: SPI_connect failed");
	if (SPI_execute_plan(read_plan(READ_LAST_EVENT), values, nulls, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "es: stream version query failed");
	if (SPI_processed > 0)
	{
		bool		isnull;

		version = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc,
											  READ_ATT_STREAM_VERSION, &isnull));
	}
	SPI_finish();
	es_internal_end(guc_level);
	return version;
}

/*
 * Apply a stream's lifecycle to a read that starts at "from": a tombstoned
 * stream raises ES003; returns the first visible version to read from, and
 * sets *min_recorded (a timestamptz datum, *min_null ' ') under max_age.
 */
static int64
read_visible_from(text *stream_id, int64 from, Datum *min_recorded, char *min_null)
{
	StreamMeta	m;
	bool		has_min;
	TimestampTz ts;
	int64		first;

	*min_recorded = (Datum) 0;
	*min_null = 'n';
	if (!lifecycle_in_use())
		return from;
	lifecycle_get(stream_id, &m);
	if (!m.found)
		return from;
	if (m.tombstoned)
		lifecycle_tombstoned(stream_id);
	first = lifecycle_first_visible(&m, m.max_count > 0 ? read_last_stored_version(stream_id) : 0,
									&has_min, &ts);
	if (has_min)
	{
		*min_recorded = TimestampTzGetDatum(ts);
		*min_null = ' ';
	}
	return Max(from, first);
}

/*
 * Call "fn" on every event of a stream with version >= from_version, upcast,
 * oldest first.  The tuples have the es.event columns, in SPI memory.  Each
 * call (with the upcasting before it) runs in a memory context that is reset
 * after it: what "fn" keeps must be copied elsewhere.
 */
void
read_stream_each(text *stream_id, int64 from_version, ReadEachFn fn, void *arg)
{
	Datum		values[5];
	char		nulls[5] = {' ', ' ', 'n', 'n', 'n'};
	Portal		portal;
	int			guc_level;
	MemoryContext per_event;
	MemoryContext old;

	values[0] = PointerGetDatum(stream_id);
	values[2] = values[3] = (Datum) 0;

	guc_level = es_internal_begin();
	upcast_begin();
	values[1] = Int64GetDatum(read_visible_from(stream_id, from_version,
												&values[4], &nulls[4]));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "es: SPI_connect failed");
	per_event = AllocSetContextCreate(CurrentMemoryContext, "es read event",
									  ALLOCSET_DEFAULT_SIZES);
	portal = SPI_cursor_open(NULL, read_plan(READ_STREAM_FORWARD), values, nulls, true);
	for (;;)
	{
		uint64		i;
		uint64		n;
		SPITupleTable *batch;

		SPI_cursor_fetch(portal, true, READ_BATCH);
		/* "fn" may run user code that uses SPI: keep the batch's own pointers */
		n = SPI_processed;
		batch = SPI_tuptable;
		if (n == 0)
			break;
		for (i = 0; i < n; i++)
		{
			/* upcasting and "fn" allocate per event: freed after each */
			old = MemoryContextSwitchTo(per_event);
			fn(upcast_tuple(batch->vals[i], batch->tupdesc), batch->tupdesc, arg);
			MemoryContextSwitchTo(old);
			MemoryContextReset(per_event);
		}
		SPI_freetuptable(batch);
	}
	SPI_cursor_close(portal);
	MemoryContextDelete(per_event);
	SPI_finish();
	upcast_end();
	es_internal_end(guc_level);
}

/*
 * The es.event columns of a stored event: taken apart directly when the
 * row is of the kind read_row.c knows ("len" > 0), else by the slot.
 */
static void
read_event_values(TupleTableSlot *slot, HeapTuple stored, Size len, Datum *values, bool *nulls)
{
	if (len > 0)
		read_stored_values(stored, values, nulls);
	else
	{
		slot_getsomeattrs(slot, READ_NATTS);
		memcpy(values, slot->tts_values, sizeof(Datum) * READ_NATTS);
		memcpy(nulls, slot->tts_isnull, sizeof(bool) * READ_NATTS);
	}
}

/*
 * es.read_stream without SPI: an index scan of the primary key (stream_id,
 * stream_version) under the statement's snapshot, the events copied into
 * the result as they come, upcast when a step applies.  It returns what
 * STREAM_QUERY returns: versions from "from" on, recorded at or before
 * as_of and at or after min_recorded (when given), at most "limit" (-1: no
 * limit), oldest first or newest first.
 */
static void
read_stream_direct(FunctionCallInfo fcinfo, Oid relid, text *stream_id,
				   int64 from, bool has_as_of, TimestampTz as_of,
				   bool has_min, TimestampTz min_recorded, int64 limit,
				   bool backwards)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Relation	rel;
	Relation	index;
	IndexScanDesc scan;
	ScanKeyData keys[2];
	int			nkeys;
	TupleTableSlot *slot;
	MemoryContext per_event = NULL;
	int64		emitted = 0;
	bool		upcasting = upcast_any();
	bool		need_values = upcasting || has_as_of || has_min;
	int			tail;
	int			natts;
	ReadRowBuf	buf = {CurrentMemoryContext, NULL, 0};
	EsUserCodeBatch batch;

	read_materialize(fcinfo);
	es_check_row_type(rsinfo->setDesc, ES_ROW_EVENT);
	if (limit == 0)
		return;
	if (upcasting)
		per_event = AllocSetContextCreate(CurrentMemoryContext, "es read event",
										  ALLOCSET_DEFAULT_SIZES);
	/* only es's C code runs between the upcaster calls of this loop */
	es_usercode_batch_begin(&batch);

	rel = table_open(relid, AccessShareLock);
	index = index_open(es_relation_oid(ES_EVENTS_PKEY), AccessShareLock);
	slot = table_slot_create(rel, NULL);
	tail = read_stored_tail(RelationGetDescr(rel), rsinfo->setDesc);
	natts = RelationGetDescr(rel)->natts;
	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_TEXTEQ,
						   PointerGetDatum(stream_id));
	/* versions start at 1: from 1 on is the whole stream, one key less to check per event */
	nkeys = 1;
	if (from > 1)
		ScanKeyEntryInitialize(&keys[nkeys++], 0, 2, BTGreaterEqualStrategyNumber, InvalidOid,
							   InvalidOid, F_INT8GE, Int64GetDatum(from));
	scan = index_beginscan_compat(rel, index, GetActiveSnapshot(), nkeys, 0);
	index_rescan(scan, keys, nkeys, NULL, 0);

	while (index_getnext_slot(scan, backwards ? BackwardScanDirection : ForwardScanDirection,
							  slot))
	{
		Datum		values[READ_NATTS];
		bool		nulls[READ_NATTS];
		bool		put = false;
		HeapTuple	stored = ExecFetchSlotHeapTuple(slot, false, NULL);
		Size		len = read_stored_len(stored, natts, tail);

		CHECK_FOR_INTERRUPTS();
		if (need_values)
			read_event_values(slot, stored, len, values, nulls);
		if (has_as_of || has_min)
		{
			TimestampTz at = DatumGetTimestampTz(values[READ_ATT_RECORDED_AT - 1]);

			if ((has_as_of && at > as_of) || (has_min && at < min_recorded))
				continue;
		}
		/* events leave the store here, in their newest shape */
		if (upcasting)
		{
			MemoryContext old = MemoryContextSwitchTo(per_event);

			put = upcast_values_batched(values, nulls, &batch);
			if (put && (len == 0 || !read_put_upcast(rsinfo->setResult, stored, values, &buf)))
				tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
			MemoryContextSwitchTo(old);
			MemoryContextReset(per_event);
		}
		/* no step applies: the event leaves as it is stored */
		if (!put && len > 0)
			read_put_stored(rsinfo->setResult, stored, len, &buf);
		else if (!put)
		{
			if (!need_values)
				read_event_values(slot, stored, len, values, nulls);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
		if (++emitted == limit)
			break;
	}

	es_usercode_batch_end(&batch);
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(rel, AccessShareLock);
	if (per_event)
		MemoryContextDelete(per_event);
	if (buf.data)
		pfree(buf.data);
}

PG_FUNCTION_INFO_V1(es_read_stream);

/* es.read_stream(stream_id, from_version, max_count, backwards, as_of) */
Datum
es_read_stream(PG_FUNCTION_ARGS)
{
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', 'n'};
	int64		from_version = PG_ARGISNULL(1) ? 1 : PG_GETARG_INT64(1);
	bool		backwards = PG_ARGISNULL(3) ? false : PG_GETARG_BOOL(3);
	text	   *stream_id = read_stream_id_arg(fcinfo, 0);
	Oid			relid;

	values[0] = PointerGetDatum(stream_id);
	if (from_version < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_version must not be negative, not " INT64_FORMAT, from_version)));
	values[2] = PG_ARGISNULL(4) ? (Datum) 0 : PG_GETARG_DATUM(4);
	nulls[2] = PG_ARGISNULL(4) ? 'n' : ' ';
	values[3] = read_max_count_arg(fcinfo, 2, &nulls[3]);

	upcast_begin();
	values[1] = Int64GetDatum(read_visible_from(stream_id, from_version,
												&values[4], &nulls[4]));
	relid = es_relation_oid(ES_EVENTS);
	if (read_direct_ok(relid))
		read_stream_direct(fcinfo, relid, stream_id, DatumGetInt64(values[1]),
						   nulls[2] == ' ', nulls[2] == ' ' ? DatumGetTimestampTz(values[2]) : 0,
						   nulls[4] == ' ', nulls[4] == ' ' ? DatumGetTimestampTz(values[4]) : 0,
						   nulls[3] == ' ' ? DatumGetInt64(values[3]) : -1, backwards);
	else
		read_events(fcinfo, backwards ? READ_STREAM_BACKWARD : READ_STREAM_FORWARD,
					values, nulls, NULL, NIL, -1);
	upcast_end();
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(es_stream_version);

/* es.stream_version(stream_id): the number of events in the stream */
Datum
es_stream_version(PG_FUNCTION_ARGS)
{
	text	   *stream_id = read_stream_id_arg(fcinfo, 0);
	int64		version = read_last_stored_version(stream_id);

	/* numbering continues after deleted and scavenged versions */
	if (lifecycle_in_use())
	{
		StreamMeta	m;

		lifecycle_get(stream_id, &m);
		version = Max(version, Max(m.deleted_before, m.scavenged_to));
	}
	PG_RETURN_INT64(version);
}

PG_FUNCTION_INFO_V1(es_last_event);

/*
 * es.last_event(stream_id, event_type): the stream's last event (of that
 * type after upcasting, when given), upcast, or NULL.
 */
Datum
es_last_event(PG_FUNCTION_ARGS)
{
	Datum		values[5];
	char		nulls[5] = {' ', 'n', 'n', ' ', 'n'};
	TupleDesc	desc;
	text	   *stream_id = read_stream_id_arg(fcinfo, 0);
	MemoryContext caller = CurrentMemoryContext;
	HeapTuple	result = NULL;
	List	   *types = NIL;
	Portal		portal;
	int			guc_level;

	values[0] = PointerGetDatum(stream_id);
	values[1] = values[2] = (Datum) 0;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "es: last_event must return a composite type");
	es_check_row_type(desc, ES_ROW_EVENT);
	desc = BlessTupleDesc(desc);

	guc_level = es_internal_begin();
	upcast_begin();
	values[3] = Int64GetDatum(read_visible_from(stream_id, 0, &values[4], &nulls[4]));
	if (!PG_ARGISNULL(1))
	{
		List	   *sources;

		types = list_make1(TextDatumGetCString(PG_GETARG_DATUM(1)));
		sources = upcast_source_types(types);
		values[1] = read_text_array(sources ? sources : types);
		nulls[1] = ' ';
	}
	/* without upcasting the first row is the answer */
	if (!upcast_any())
	{
		values[2] = Int64GetDatum(1);
		nulls[2] = ' ';
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "es: SPI_connect failed");
	portal = SPI_cursor_open(NULL, read_plan(READ_LAST_EVENT), values, nulls, true);
	while (result == NULL)
	{
		HeapTuple	tuple;

		SPI_cursor_fetch(portal, true, 1);
		if (SPI_processed == 0)
			break;
		/* events leave the store here, in their newest shape */
		tuple = upcast_tuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc);
		if (types == NIL || read_type_wanted(tuple, SPI_tuptable->tupdesc, types))
		{
			Datum		v[READ_NATTS];
			bool		n[READ_NATTS];
			MemoryContext spi = MemoryContextSwitchTo(caller);

			heap_deform_tuple(tuple, SPI_tuptable->tupdesc, v, n);
			result = heap_form_tuple(desc, v, n);
			MemoryContextSwitchTo(spi);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	SPI_finish();
	upcast_end();
	es_internal_end(guc_level);

	if (result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(HeapTupleGetDatum(result));
}
