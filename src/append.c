/*-------------------------------------------------------------------------
 *
 * append.c
 *	  es.append, es.append_json, es.append_event: optimistic concurrency
 *	  and exact idempotency on an append-only log; es.try_append,
 *	  es.try_append_json, es.try_append_event: the same appends, answering
 *	  a stale expected version with NULL instead of ES001.
 *
 * An append locks its stream (a transaction-scoped lock on a hash of the
 * stream id: never wider than one stream), reads the stream's version from
 * the primary key with the latest snapshot, checks the expected version,
 * looks up given event ids in the (stream_id, event_id) index to detect a
 * repeated call, takes global positions from the sequence under the gap-safe
 * horizon (horizon.c), and inserts the rows and their index entries
 * directly, as COPY does: no SQL, no executor start-up, no plan.  The
 * primary key backs the lock up.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "access/genam.h"
#include "access/relscan.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "tcop/utility.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"
#include "utils/uuid.h"
#include "utils/xid8.h"

#include "es.h"
#include "append_int.h"

/* The open relations of one append */
typedef struct AppendTarget
{
	Relation	rel;			/* es.events */
	Relation	pkey;			/* (stream_id, stream_version) */
	Relation	idkey;			/* (stream_id, event_id) */
	Snapshot	snapshot;		/* latest snapshot, taken under the stream lock */
	TupleTableSlot *slot;		/* for index lookups */
} AppendTarget;

/* The time of the last event id generated in this backend, in ns since 1970 */
static int64 append_uuid_last_ns = 0;

/*
 * A fresh event id: a UUID version 7 (RFC 9562), time-ordered, so that the
 * unique index on (stream_id, event_id) takes each new one at the end of
 * its stream's range rather than at a random place in it (for a long
 * stream, a random page among many), and ids sort by time.  Bits: 48 of Unix time in ms, the version (7), 12 of
 * the fraction of the ms (RFC 9562 section 6.2, method 3), the variant,
 * 62 random bits from pg_strong_random.  Within a backend each id is
 * greater than the last, even if the clock goes back or stands still: the
 * time is then moved one step (1/4096 ms) past the last one's.
 */
static Datum
append_new_event_id(void)
{
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));
	struct timespec ts;
	int64		ns;
	int64		ms;
	uint32		fraction;
	int			i;

	/* one step of the 12-bit fraction, rounded up */
#define APPEND_UUID_STEP_NS		(1000000 / 4096 + 1)

	if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
		elog(ERROR, "es: clock_gettime failed: %m");
	ns = (int64) ts.tv_sec * 1000000000 + ts.tv_nsec;
	if (ns < append_uuid_last_ns + APPEND_UUID_STEP_NS)
		ns = append_uuid_last_ns + APPEND_UUID_STEP_NS;
	append_uuid_last_ns = ns;
	ms = ns / 1000000;
	fraction = (uint32) (((ns % 1000000) * 4096) / 1000000);

	if (!pg_strong_random(&uuid->data[8], 8))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random values")));
	for (i = 0; i < 6; i++)
		uuid->data[i] = (unsigned char) (ms >> (8 * (5 - i)));
	uuid->data[6] = (unsigned char) (0x70 | (fraction >> 8));
	uuid->data[7] = (unsigned char) fraction;
	uuid->data[8] = (uuid->data[8] & 0x3f) | 0x80;
	return UUIDPGetDatum(uuid);
}

/* Raise the error for a NULL argument */
void
append_null_argument(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
			 errmsg("%s must not be null", name)));
}

/* Check a stream id argument: not null, not empty */
text *
append_stream_id_arg(FunctionCallInfo fcinfo, int argno)
{
	text	   *stream_id;

	if (PG_ARGISNULL(argno))
		append_null_argument("stream_id");
	stream_id = PG_GETARG_TEXT_PP(argno);
	if (VARSIZE_ANY_EXHDR(stream_id) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stream_id must not be empty")));
	return stream_id;
}

/*
 * Check an expected version argument; false when it is NULL (any).  A try
 * append needs one: without it, a stale version could not be told apart,
 * and a driver's null (an unset variable) would silently append at any
 * version.
 */
bool
append_expected_arg(FunctionCallInfo fcinfo, int argno, int64 *expected,
					bool try_only)
{
	if (PG_ARGISNULL(argno))
	{
		if (try_only)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("expected_version must not be null in a try append"),
					 errhint("Use es.append, es.append_json or es.append_event to append at any version.")));
		return false;
	}
	*expected = PG_GETARG_INT64(argno);
	if (*expected < -1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("expected_version must be NULL, -1, 0 or a positive version, not " INT64_FORMAT,
						*expected),
				 errhint("NULL means any version, 0 no events yet, -1 at least one event.")));
	return true;
}

/*
 * Validate and normalize one event (position "n", 1-based, for messages):
 * a non-empty type, object data and metadata (NULL metadata becomes {}),
 * a fresh id when none is given, schema version 1 when none is given.
 * Returns true when the caller gave an id.
 */
bool
append_fill_event(AppendEvent *ev, int n,
				  text *event_type, Jsonb *data, Jsonb *metadata,
				  pg_uuid_t *event_id, bool schema_given, int32 schema_version)
{
	if (event_type == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event_type of event %d must not be null", n)));
	if (VARSIZE_ANY_EXHDR(event_type) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event_type of event %d must not be empty", n)));
	if (data == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("data of event %d must not be null", n),
				 errhint("Use '{}' for an event without data.")));
	if (!JB_ROOT_IS_OBJECT(data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("data of event %d must be a JSON object", n)));
	if (metadata != NULL && !JB_ROOT_IS_OBJECT(metadata))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("metadata of event %d must be a JSON object", n)));
	if (schema_given && schema_version < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("schema_version of event %d must be at least 1, not %d",
						n, schema_version)));

	ev->event_type = PointerGetDatum(event_type);
	ev->data = PointerGetDatum(data);
	ev->metadata = metadata ? PointerGetDatum(metadata)
		: DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
	ev->event_id = event_id ? UUIDPGetDatum(event_id)
		: append_new_event_id();
	ev->schema_version = Int32GetDatum(schema_given ? schema_version : 1);
	return event_id != NULL;
}

/* qsort comparator for uuids */
static int
append_uuid_cmp(const void *a, const void *b)
{
	return memcmp(DatumGetUUIDP(*(const Datum *) a),
				  DatumGetUUIDP(*(const Datum *) b), UUID_LEN);
}

/* Reject a call that lists the same event id twice */
static void
append_check_duplicate_ids(AppendEvent *events, int n)
{
	Datum	   *ids;
	int			i;

	if (n < 2)
		return;
	ids = palloc(sizeof(Datum) * n);
	for (i = 0; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		ids[i] = events[i].event_id;
	}
	qsort(ids, n, sizeof(Datum), append_uuid_cmp);
	for (i = 1; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		if (append_uuid_cmp(&ids[i - 1], &ids[i]) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("event id %s appears more than once in one append",
							DatumGetCString(DirectFunctionCall1(uuid_out, ids[i])))));
	}
	pfree(ids);
}

/*
 * Position an index scan of es.events on a stream (and on an event id, when
 * given), with the target's snapshot.
 */
static IndexScanDesc
append_index_scan(AppendTarget *t, Relation index, text *stream_id,
				  Datum event_id)
{
	ScanKeyData keys[2];
	int			nkeys = 1;
	IndexScanDesc scan;

	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_TEXTEQ,
						   PointerGetDatum(stream_id));
	if (event_id != (Datum) 0)
	{
		ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
							   InvalidOid, F_UUID_EQ, event_id);
		nkeys = 2;
	}
	scan = index_beginscan_compat(t->rel, index, t->snapshot, nkeys, 0);
	index_rescan(scan, keys, nkeys, NULL, 0);
	return scan;
}

/* The stream's current version, 0 when it has no events */
static int64
append_stream_version(AppendTarget *t, text *stream_id)
{
	IndexScanDesc scan = append_index_scan(t, t->pkey, stream_id, (Datum) 0);
	int64		version = 0;

	if (index_getnext_slot(scan, BackwardScanDirection, t->slot))
	{
		bool		isnull;

		version = DatumGetInt64(slot_getattr(t->slot, Anum_events_stream_version,
											 &isnull));
	}
	index_endscan(scan);
	return version;
}

/* True when two text datums hold the same string */
static bool
append_text_equal(Datum a, Datum b)
{
	text	   *ta = DatumGetTextPP(a);
	text	   *tb = DatumGetTextPP(b);

	return VARSIZE_ANY_EXHDR(ta) == VARSIZE_ANY_EXHDR(tb) &&
		memcmp(VARDATA_ANY(ta), VARDATA_ANY(tb), VARSIZE_ANY_EXHDR(ta)) == 0;
}

/* True when the stored event in the slot has the content of "ev" */
static bool
append_same_event(TupleTableSlot *slot, AppendEvent *ev)
{
	bool		isnull;

	return append_text_equal(slot_getattr(slot, Anum_events_event_type, &isnull),
							 ev->event_type) &&
		DatumGetInt32(slot_getattr(slot, Anum_events_schema_version, &isnull)) ==
		DatumGetInt32(ev->schema_version) &&
		DatumGetBool(DirectFunctionCall2(jsonb_eq,
										 slot_getattr(slot, Anum_events_data, &isnull),
										 ev->data)) &&
		DatumGetBool(DirectFunctionCall2(jsonb_eq,
										 slot_getattr(slot, Anum_events_metadata, &isnull),
										 ev->metadata));
}

/*
 * See whether the events of this call are already in the stream.  If all of
 * them are, in the same order and content, the call is a repeat of an
 * earlier one and succeeds without writing: returns the version they were
 * written at.  If some are, or differ, that is an idempotency mismatch
 * (ES002).  If none are, returns -1.
 */
static int64
append_check_overlap(AppendTarget *t, text *stream_id, AppendEvent *events, int n)
{
	int64		first_version = 0;
	int			found = 0;
	bool		in_order = true;
	int			i;

	for (i = 0; i < n; i++)
	{
		IndexScanDesc scan;

		CHECK_FOR_INTERRUPTS();
		scan = append_index_scan(t, t->idkey, stream_id, events[i].event_id);
		if (index_getnext_slot(scan, ForwardScanDirection, t->slot))
		{
			bool		isnull;
			int64		version = DatumGetInt64(slot_getattr(t->slot,
															 Anum_events_stream_version,
															 &isnull));

			if (!append_same_event(t->slot, &events[i]))
				ereport(ERROR,
						(errcode(ERRCODE_ES_IDEMPOTENCY_MISMATCH),
						 errmsg("event %s is already in stream \"%s\" with different content",
								DatumGetCString(DirectFunctionCall1(uuid_out, events[i].event_id)),
								text_to_cstring(stream_id)),
						 errdetail("It is stored at version " INT64_FORMAT ".", version),
						 errhint("Give new events new ids.")));
			if (found == 0)
				first_version = version - i;
			else if (version != first_version + i)
				in_order = false;
			found++;
		}
		index_endscan(scan);
	}

	if (found == 0)
		return -1;
	if (found < n)
		ereport(ERROR,
				(errcode(ERRCODE_ES_IDEMPOTENCY_MISMATCH),
				 errmsg("append to stream \"%s\" partly repeats events already stored",
						text_to_cstring(stream_id)),
				 errdetail("%d of the %d events are already in the stream.", found, n),
				 errhint("Re-append exactly the events of the earlier call, or only new events.")));
	if (!in_order || first_version < 1)
		ereport(ERROR,
				(errcode(ERRCODE_ES_IDEMPOTENCY_MISMATCH),
				 errmsg("append to stream \"%s\" repeats events already stored, in another order",
						text_to_cstring(stream_id)),
				 errhint("Re-append exactly the events of the earlier call, or only new events.")));
	return first_version + n - 1;
}

/* True when a stream at "version" (existing or not) meets "expected" */
static bool
append_version_matches(int64 expected, int64 version, bool exists)
{
	return expected == version ||
		(expected == -1 && exists) ||
		(expected == 0 && !exists);
}

/* Raise the wrong expected version error */
static void
append_wrong_version(text *stream_id, int64 expected, int64 actual)
{
	const char *want;

	if (expected == 0)
		want = "no stream";
	else if (expected == -1)
		want = "an existing stream";
	else
		want = psprintf("version " INT64_FORMAT, expected);

	ereport(ERROR,
			(errcode(ERRCODE_ES_WRONG_EXPECTED_VERSION),
			 errmsg("wrong expected version for stream \"%s\"",
					text_to_cstring(stream_id)),
			 errdetail("Expected %s, actual version " INT64_FORMAT ".", want, actual),
			 errhint("Read the stream again and retry with its current version.")));
}

/* The longest stream id (JSON-escaped) that a notification's payload names */
#define APPEND_NOTIFY_MAX_ID	1024

/* Send NOTIFY es_events {"stream_id", "version", "position"} (es.notify) */
static void
append_notify(text *stream_id, int64 version, int64 position)
{
	StringInfoData id;
	StringInfoData buf;

	initStringInfo(&id);
	escape_json(&id, text_to_cstring(stream_id));
	initStringInfo(&buf);
	/* a NOTIFY payload is short: a long stream id is named by the position */
	appendStringInfo(&buf, "{\"stream_id\": %s, \"version\": " INT64_FORMAT
					 ", \"position\": " INT64_FORMAT "}",
					 id.len <= APPEND_NOTIFY_MAX_ID ? id.data : "null",
					 version, position);
	Async_Notify("es_events", buf.data);
	pfree(buf.data);
	pfree(id.data);
}

/*
 * Events are inserted in batches through a fixed set of reused slots, as
 * COPY's multi-insert buffers do (copyfrom.c): at most APPEND_BATCH_TUPLES
 * events, or about APPEND_BATCH_BYTES of event data, per table_multi_insert.
 * A slot per event would pin the tuple descriptor once per event, and the
 * resource owner keeps those identical pins in a hash table whose probing
 * then grows with their number: quadratic in the batch size.
 */
#define APPEND_BATCH_TUPLES		1000
#define APPEND_BATCH_BYTES		65535

/* Positions are taken this many at a time under the horizon lock */
#define APPEND_POSITION_CHUNK	1000

/*
 * Insert the events as versions version+1 ... version+n at the given
 * positions, with their index entries.  The only INSERT trigger on
 * es.events is the extension's inline projection trigger (the DDL guard
 * allows no other), fired here when inline projections exist, for every row
 * at the end of this "query", after all of them are inserted (a handler's
 * error aborts the append); there are no CHECK constraints to evaluate.
 */
static void
append_insert(AppendTarget *t, text *stream_id, AppendEvent *events, int n,
			  int64 version, int64 *positions)
{
	EState	   *estate = CreateExecutorState();
	ResultRelInfo *rri = makeNode(ResultRelInfo);
	int			nslots = Min(n, APPEND_BATCH_TUPLES);
	TupleTableSlot **slots = palloc(sizeof(TupleTableSlot *) * nslots);
	CommandId	cid = GetCurrentCommandId(true);
	Datum		now = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	Datum		xid = FullTransactionIdGetDatum(GetTopFullTransactionId());
	bool		fire = projection_inline_active();
	bool		save = projection_inline_firing;
	int			done;
	int			i;

	InitResultRelInfo(rri, t->rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);
	for (i = 0; i < nslots; i++)
		slots[i] = table_slot_create(t->rel, NULL);

	/* Inline projections: the AFTER INSERT trigger, only when there are any */
	if (fire)
		AfterTriggerBeginQuery();

	for (done = 0; done < n;)
	{
		int			nbatch = 0;
		Size		bytes = 0;

		/* Fill the slots with the next events */
		while (done + nbatch < n && nbatch < nslots &&
			   (nbatch == 0 || bytes < APPEND_BATCH_BYTES))
		{
			AppendEvent *ev = &events[done + nbatch];
			TupleTableSlot *slot = slots[nbatch];
			Datum	   *values = slot->tts_values;

			CHECK_FOR_INTERRUPTS();
			ExecClearTuple(slot);
			memset(slot->tts_isnull, false, sizeof(bool) * Natts_events);
			values[Anum_events_global_position - 1] = Int64GetDatum(positions[done + nbatch]);
			values[Anum_events_stream_id - 1] = PointerGetDatum(stream_id);
			values[Anum_events_stream_version - 1] = Int64GetDatum(version + 1 + done + nbatch);
			values[Anum_events_event_id - 1] = ev->event_id;
			values[Anum_events_event_type - 1] = ev->event_type;
			values[Anum_events_schema_version - 1] = ev->schema_version;
			values[Anum_events_data - 1] = ev->data;
			values[Anum_events_metadata - 1] = ev->metadata;
			values[Anum_events_recorded_at - 1] = now;
			values[Anum_events_xid - 1] = xid;
			ExecStoreVirtualTuple(slot);
			bytes += VARSIZE_ANY(DatumGetPointer(ev->data)) +
				VARSIZE_ANY(DatumGetPointer(ev->metadata)) +
				VARSIZE_ANY(DatumGetPointer(ev->event_type));
			nbatch++;
		}

		if (nbatch == 1)
			table_tuple_insert(t->rel, slots[0], cid, 0, NULL);
		else
			table_multi_insert(t->rel, slots, nbatch, cid, 0, NULL);

		for (i = 0; i < nbatch; i++)
		{
			List	   *recheck;

			CHECK_FOR_INTERRUPTS();
			/* index expressions (the category) are evaluated per tuple */
			ResetPerTupleExprContext(estate);
			recheck = ExecInsertIndexTuples_compat(rri, slots[i], estate,
												   false, false, NULL, NIL);
			Assert(recheck == NIL);
			list_free(recheck);
			/* queues the row's trigger event by its tid; the slot is reused */
			if (fire)
				ExecARInsertTriggers(estate, rri, slots[i], NIL, NULL);
		}
		done += nbatch;
	}

	if (fire)
	{
		projection_inline_firing = true;
		PG_TRY();
		{
			AfterTriggerEndQuery(estate);
		}
		PG_FINALLY();
		{
			projection_inline_firing = save;
		}
		PG_END_TRY();
		/* the trigger machinery made slots and opened es.events for itself */
		ExecResetTupleTable(estate->es_tupleTable, false);
		ExecCloseResultRelations(estate);
	}

	for (i = 0; i < nslots; i++)
		ExecDropSingleTupleTableSlot(slots[i]);
	pfree(slots);

	ExecCloseIndices(rri);
	FreeExecutorState(estate);
}

/*
 * Take one position per event from the sequence, under the gap-safe
 * horizon, so that gap-safe readers stop below them.  The horizon lock is
 * taken in chunks: once the first chunk has recorded our first position,
 * every later one is above it, so a reader that gets the lock in between
 * still stops below all of them.  Between chunks the lock is free, so that
 * readers need not wait for a whole big append, and interrupts are served
 * (they are held off while an LWLock is held).
 */
static void
append_positions(Oid seqoid, int64 *positions, int n)
{
	int			done = 0;

	while (done < n)
	{
		int			end = Min(n, done + APPEND_POSITION_CHUNK);
		int			i;

		CHECK_FOR_INTERRUPTS();
		horizon_begin_allocation();
		for (i = done; i < end; i++)
		{
			CHECK_FOR_INTERRUPTS();	/* held off under the lock; cheap */
			positions[i] = nextval_internal(seqoid, false);
		}
		horizon_end_allocation(positions[0]);
		done = end;
	}
}

/*
 * Append "n" validated events to a stream; the heart of every append
 * function.  Returns the stream's new version (or, for a repeated call, the
 * version its events were written at).  A stale expected version raises
 * ES001, or, for a try append ("try_only"), sets *stale and returns -1 having
 * written nothing: the same checks under the same lock, only the answer
 * differs.  The stream lock is kept to the end of the transaction either way.
 */
int64
append_events(text *stream_id, AppendEvent *events, int n, bool ids_given,
			  bool has_expected, int64 expected, bool try_only, bool *stale)
{
	AppendTarget t;
	int64		version;
	bool		exists;
	int64		result;
	int64	   *positions;
	Oid			seqoid;

	if (ids_given)
		append_check_duplicate_ids(events, n);

	/* we bypass the executor, so make its checks ourselves */
	PreventCommandIfReadOnly(try_only ? "es.try_append" : "es.append");
	PreventCommandIfParallelMode(try_only ? "es.try_append" : "es.append");

	/* Make sure our xid exists before positions do (fallback rule) */
	(void) GetTopTransactionId();
	seqoid = es_relation_oid(ES_POSITION_SEQ);
	/* nextval then never waits for a lock while we hold the horizon lock */
	LockRelationOid(seqoid, RowExclusiveLock);

	t.rel = table_open(es_relation_oid(ES_EVENTS), RowExclusiveLock);
	t.pkey = index_open(es_relation_oid(ES_EVENTS_PKEY), RowExclusiveLock);
	t.idkey = index_open(es_relation_oid(ES_EVENTS_EVENT_ID), RowExclusiveLock);
	t.slot = table_slot_create(t.rel, NULL);

	/* Under the stream lock, the latest snapshot shows the true version */
	es_lock_stream_id(stream_id);
	t.snapshot = RegisterSnapshot(GetLatestSnapshot());

	version = append_stream_version(&t, stream_id);
	exists = version > 0;
	/* deleted, tombstoned or scavenged streams (rare: a cached flag says) */
	if (lifecycle_in_use())
	{
		StreamMeta	m;

		lifecycle_get(stream_id, &m);
		if (m.tombstoned)
			lifecycle_tombstoned(stream_id);
		/* numbering continues after deleted and scavenged versions */
		version = Max(version, Max(m.deleted_before, m.scavenged_to));
		/* a soft deleted stream can be recreated with expected version 0 */
		exists = version > m.deleted_before;
	}
	result = -1;
	*stale = false;
	/* a repeat is recognized first: it succeeds whatever the expected version */
	if (ids_given)
		result = append_check_overlap(&t, stream_id, events, n);
	if (result < 0 && has_expected &&
		!append_version_matches(expected, version, exists))
	{
		if (!try_only)
			append_wrong_version(stream_id, expected, version);
		*stale = true;
	}

	if (result < 0 && !*stale)
	{
		/* Positions, under the horizon so gap-safe readers stop below them */
		positions = palloc(sizeof(int64) * n);
		append_positions(seqoid, positions, n);

		append_insert(&t, stream_id, events, n, version, positions);
		projector_note_append();
		result = version + n;

		if (es_notify)
			append_notify(stream_id, result, positions[n - 1]);
		/* a later append in this statement must see these events */
		CommandCounterIncrement();
	}

	UnregisterSnapshot(t.snapshot);
	ExecDropSingleTupleTableSlot(t.slot);
	index_close(t.idkey, NoLock);
	index_close(t.pkey, NoLock);
	table_close(t.rel, NoLock);
	return result;
}
