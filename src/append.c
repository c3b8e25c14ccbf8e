/*-------------------------------------------------------------------------
 *
 * append.c
 *	  es.append, es.append_json, es.append_event: optimistic concurrency
 *	  and exact idempotency on an append-only log.
 *
 * An append locks its stream (a transaction-scoped lock on a hash of the
 * stream id: never wider than one stream), reads the stream's version with
 * the latest snapshot, checks the expected version, takes global positions
 * from the sequence under the gap-safe horizon (horizon.c), and inserts all
 * events with one cached plan.  The primary key (stream_id, stream_version)
 * backs the lock up; the unique index (stream_id, event_id) detects
 * re-appended events, which are then compared with what is stored.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/sequence.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/typcache.h"
#include "utils/uuid.h"

#include "es.h"

/* Distinguishes our stream locks from user advisory locks (which use 1, 2) */
#define APPEND_LOCKTAG_FIELD4	0x4553

/* One event to append, validated and normalized */
typedef struct AppendEvent
{
	Datum		event_type;		/* text */
	Datum		data;			/* jsonb object */
	Datum		metadata;		/* jsonb object */
	Datum		event_id;		/* uuid */
	Datum		schema_version; /* int4 */
} AppendEvent;

/* Cached plans, prepared once per backend */
static SPIPlanPtr version_plan = NULL;
static SPIPlanPtr insert_one_plan = NULL;
static SPIPlanPtr insert_one_idem_plan = NULL;
static SPIPlanPtr insert_many_plan = NULL;
static SPIPlanPtr insert_many_idem_plan = NULL;
static SPIPlanPtr overlap_plan = NULL;

#define EVENT_COLUMNS \
	"global_position, stream_id, stream_version, event_id, event_type, " \
	"schema_version, data, metadata, recorded_at"

/* Prepare a plan and keep it for the life of the backend */
static SPIPlanPtr
append_prepare(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "es: SPI_prepare failed for \"%s\": %s",
			 sql, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "es: SPI_keepplan failed");
	return plan;
}

/* Prepare every plan of this file on first use */
static void
append_prepare_plans(void)
{
	if (version_plan == NULL)
	{
		Oid			types[] = {TEXTOID};

		version_plan = append_prepare(
			"SELECT stream_version FROM es.events WHERE stream_id = $1 "
			"ORDER BY stream_version DESC LIMIT 1", 1, types);
	}
	if (insert_one_plan == NULL)
	{
		Oid			types[] = {INT8OID, TEXTOID, INT8OID, UUIDOID, TEXTOID,
		INT4OID, JSONBOID, JSONBOID};

		insert_one_plan = append_prepare(
			"INSERT INTO es.events (" EVENT_COLUMNS ") "
			"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())", 8, types);
		insert_one_idem_plan = append_prepare(
			"INSERT INTO es.events (" EVENT_COLUMNS ") "
			"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now()) "
			"ON CONFLICT DO NOTHING", 8, types);
	}
	if (insert_many_plan == NULL)
	{
		Oid			types[] = {INT8ARRAYOID, TEXTOID, INT8OID, UUIDARRAYOID,
		TEXTARRAYOID, INT4ARRAYOID, JSONBARRAYOID, JSONBARRAYOID};

#define INSERT_MANY \
		"INSERT INTO es.events (" EVENT_COLUMNS ") " \
		"SELECT u.p, $2, $3 + u.o - 1, u.i, u.t, u.s, u.d, u.m, now() " \
		"FROM unnest($1, $4, $5, $6, $7, $8) WITH ORDINALITY " \
		"AS u(p, i, t, s, d, m, o)"
		insert_many_plan = append_prepare(INSERT_MANY, 8, types);
		insert_many_idem_plan = append_prepare(INSERT_MANY " ON CONFLICT DO NOTHING",
											   8, types);
	}
	if (overlap_plan == NULL)
	{
		Oid			types[] = {TEXTOID, UUIDARRAYOID, TEXTARRAYOID, INT4ARRAYOID,
		JSONBARRAYOID, JSONBARRAYOID};

		overlap_plan = append_prepare(
			"SELECT n.o, e.stream_version, "
			"       e.event_type = n.t AND e.schema_version = n.s "
			"       AND e.data = n.d AND e.metadata = n.m "
			"FROM unnest($2, $3, $4, $5, $6) WITH ORDINALITY AS n(i, t, s, d, m, o) "
			"JOIN es.events e ON e.stream_id = $1 AND e.event_id = n.i "
			"ORDER BY n.o", 6, types);
	}
}

/* Raise the error for a NULL argument */
static void
append_null_argument(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
			 errmsg("%s must not be null", name)));
}

/* Check a stream id argument: not null, not empty */
static text *
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

/* Check an expected version argument; false when it is NULL (any) */
static bool
append_expected_arg(FunctionCallInfo fcinfo, int argno, int64 *expected)
{
	if (PG_ARGISNULL(argno))
		return false;
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
static bool
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
		: DirectFunctionCall1(gen_random_uuid, (Datum) 0);
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
		ids[i] = events[i].event_id;
	qsort(ids, n, sizeof(Datum), append_uuid_cmp);
	for (i = 1; i < n; i++)
		if (append_uuid_cmp(&ids[i - 1], &ids[i]) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("event id %s appears more than once in one append",
							DatumGetCString(DirectFunctionCall1(uuid_out, ids[i])))));
	pfree(ids);
}

/* Lock the stream until the end of the transaction */
static void
append_lock_stream(text *stream_id)
{
	LOCKTAG		tag;
	uint64		h;

	h = DatumGetUInt64(hash_any_extended((unsigned char *) VARDATA_ANY(stream_id),
										 VARSIZE_ANY_EXHDR(stream_id), 0));
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (h >> 32), (uint32) h,
						 APPEND_LOCKTAG_FIELD4);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/* Run a cached plan with the latest snapshot (sees every commit so far) */
static int
append_execute_latest(SPIPlanPtr plan, Datum *values, long tcount)
{
	Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());
	int			rc;

	rc = SPI_execute_snapshot(plan, values, NULL, snap, InvalidSnapshot,
							  false, true, tcount);
	UnregisterSnapshot(snap);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "es: query failed: %s", SPI_result_code_string(rc));
	return rc;
}

/* The stream's current version, 0 when it has no events */
static int64
append_stream_version(text *stream_id)
{
	Datum		values[1];
	bool		isnull;

	values[0] = PointerGetDatum(stream_id);
	append_execute_latest(version_plan, values, 1);
	if (SPI_processed == 0)
		return 0;
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull));
}

/* Build a one-dimensional array of "n" datums of a given element type */
static Datum
append_array(Datum *elems, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_array(elems, n, elemtype,
										   typlen, typbyval, typalign));
}

/* One field of every event (at "offset" in AppendEvent), as an array */
static Datum
append_column(AppendEvent *events, int n, size_t offset, Oid elemtype)
{
	Datum	   *elems = palloc(sizeof(Datum) * n);
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = *(Datum *) ((char *) &events[i] + offset);
	return append_array(elems, n, elemtype);
}

/*
 * The append cannot write as asked: see whether its events are already in
 * the stream.  If all of them are, in the same order and content, the call
 * succeeds as a repeat of an earlier one and returns the version they were
 * written at; if some are, or differ, it is an idempotency mismatch (ES002);
 * if none are, returns -1 and the caller reports the original problem.
 * "inserted" events of this very call are in the stream already (an insert
 * that skipped some conflicting rows); the error discards them.
 */
static int64
append_check_overlap(text *stream_id, AppendEvent *events, int n,
					 uint64 inserted)
{
	Datum		values[6];
	int64		first_version = 0;
	uint64		found;
	uint64		i;

	values[0] = PointerGetDatum(stream_id);
	values[1] = append_column(events, n, offsetof(AppendEvent, event_id), UUIDOID);
	values[2] = append_column(events, n, offsetof(AppendEvent, event_type), TEXTOID);
	values[3] = append_column(events, n, offsetof(AppendEvent, schema_version), INT4OID);
	values[4] = append_column(events, n, offsetof(AppendEvent, data), JSONBOID);
	values[5] = append_column(events, n, offsetof(AppendEvent, metadata), JSONBOID);

	append_execute_latest(overlap_plan, values, 0);
	found = SPI_processed;
	if (found == 0)
		return -1;

	for (i = 0; i < found; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		ord = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		int64		version = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		bool		same = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));

		if (i == 0)
			first_version = version;
		if (!same)
			ereport(ERROR,
					(errcode(ERRCODE_ES_IDEMPOTENCY_MISMATCH),
					 errmsg("event %s is already in stream \"%s\" with different content",
							DatumGetCString(DirectFunctionCall1(uuid_out, events[ord - 1].event_id)),
							text_to_cstring(stream_id)),
					 errdetail("It is stored at version " INT64_FORMAT ".", version),
					 errhint("Give new events new ids.")));
		if (ord != (int64) i + 1 || version != first_version + (int64) i)
			break;
	}
	if (found - inserted < (uint64) n)
		ereport(ERROR,
				(errcode(ERRCODE_ES_IDEMPOTENCY_MISMATCH),
				 errmsg("append to stream \"%s\" partly repeats events already stored",
						text_to_cstring(stream_id)),
				 errdetail("%d of the %d events are already in the stream.",
						   (int) (found - inserted), n),
				 errhint("Re-append exactly the events of the earlier call, or only new events.")));
	if (i < found)
		ereport(ERROR,
				(errcode(ERRCODE_ES_IDEMPOTENCY_MISMATCH),
				 errmsg("append to stream \"%s\" repeats events already stored, in another order",
						text_to_cstring(stream_id)),
				 errhint("Re-append exactly the events of the earlier call, or only new events.")));
	return first_version + n - 1;
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

/* Send NOTIFY es_events {"stream_id", "version", "position"} (es.notify) */
static void
append_notify(text *stream_id, int64 version, int64 position)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"stream_id\": ");
	escape_json(&buf, text_to_cstring(stream_id));
	appendStringInfo(&buf, ", \"version\": " INT64_FORMAT
					 ", \"position\": " INT64_FORMAT "}", version, position);
	Async_Notify("es_events", buf.data);
	pfree(buf.data);
}

/*
 * Append "n" validated events to a stream; the heart of every append
 * function.  Returns the stream's new version.
 */
static int64
append_events(text *stream_id, AppendEvent *events, int n, bool ids_given,
			  bool has_expected, int64 expected)
{
	int64		version;
	int64		result;
	int64	   *positions;
	Oid			seqoid;
	Datum		values[8];
	int			rc;
	int			i;

	if (ids_given)
		append_check_duplicate_ids(events, n);

	/* Make sure our xid exists before positions do (fallback rule) */
	(void) GetTopTransactionId();
	seqoid = es_sequence_oid();
	/* nextval then never waits for a lock while we hold the horizon lock */
	LockRelationOid(seqoid, RowExclusiveLock);

	append_lock_stream(stream_id);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "es: SPI_connect failed");
	append_prepare_plans();

	version = append_stream_version(stream_id);
	if (has_expected &&
		!(expected == version ||
		  (expected == -1 && version > 0)))
	{
		int64		repeat = ids_given ? append_check_overlap(stream_id, events, n, 0) : -1;

		if (repeat < 0)
			append_wrong_version(stream_id, expected, version);
		SPI_finish();
		return repeat;
	}

	/* Positions, under the horizon so gap-safe readers stop below them */
	positions = palloc(sizeof(int64) * n);
	horizon_begin_allocation();
	for (i = 0; i < n; i++)
		positions[i] = nextval_internal(seqoid, false);
	horizon_end_allocation(positions[0]);

	if (n == 1)
	{
		values[0] = Int64GetDatum(positions[0]);
		values[1] = PointerGetDatum(stream_id);
		values[2] = Int64GetDatum(version + 1);
		values[3] = events[0].event_id;
		values[4] = events[0].event_type;
		values[5] = events[0].schema_version;
		values[6] = events[0].data;
		values[7] = events[0].metadata;
		rc = SPI_execute_plan(ids_given ? insert_one_idem_plan : insert_one_plan,
							  values, NULL, false, 0);
	}
	else
	{
		Datum	   *pos = palloc(sizeof(Datum) * n);

		for (i = 0; i < n; i++)
			pos[i] = Int64GetDatum(positions[i]);
		values[0] = append_array(pos, n, INT8OID);
		values[1] = PointerGetDatum(stream_id);
		values[2] = Int64GetDatum(version + 1);
		values[3] = append_column(events, n, offsetof(AppendEvent, event_id), UUIDOID);
		values[4] = append_column(events, n, offsetof(AppendEvent, event_type), TEXTOID);
		values[5] = append_column(events, n, offsetof(AppendEvent, schema_version), INT4OID);
		values[6] = append_column(events, n, offsetof(AppendEvent, data), JSONBOID);
		values[7] = append_column(events, n, offsetof(AppendEvent, metadata), JSONBOID);
		rc = SPI_execute_plan(ids_given ? insert_many_idem_plan : insert_many_plan,
							  values, NULL, false, 0);
	}
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "es: insert failed: %s", SPI_result_code_string(rc));

	result = version + n;
	if (SPI_processed != (uint64) n)
	{
		/*
		 * Some ids were already in the stream: a repeat of an earlier call,
		 * or a mismatch.  A partial insert never passes the check (stored
		 * events sit below the new ones, so versions cannot be contiguous
		 * in call order), and the error discards it.
		 */
		result = append_check_overlap(stream_id, events, n, SPI_processed);
		if (result < 0)
			elog(ERROR, "es: conflicting insert into stream \"%s\" without a stored event",
				 text_to_cstring(stream_id));
	}
	else if (es_notify)
		append_notify(stream_id, result, positions[n - 1]);

	SPI_finish();
	return result;
}

PG_FUNCTION_INFO_V1(es_append_event);

/*
 * es.append_event(stream_id, event_type, data, metadata, expected_version,
 *				   event_id, schema_version)
 */
Datum
es_append_event(PG_FUNCTION_ARGS)
{
	text	   *stream_id = append_stream_id_arg(fcinfo, 0);
	AppendEvent ev;
	int64		expected = 0;
	bool		has_expected = append_expected_arg(fcinfo, 4, &expected);
	bool		ids_given;

	ids_given = append_fill_event(&ev, 1,
								  PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1),
								  PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2),
								  PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3),
								  PG_ARGISNULL(5) ? NULL : PG_GETARG_UUID_P(5),
								  !PG_ARGISNULL(6),
								  PG_ARGISNULL(6) ? 1 : PG_GETARG_INT32(6));

	PG_RETURN_INT64(append_events(stream_id, &ev, 1, ids_given,
								  has_expected, expected));
}

PG_FUNCTION_INFO_V1(es_append);

/* es.append(stream_id, events es.new_event[], expected_version) */
Datum
es_append(PG_FUNCTION_ARGS)
{
	text	   *stream_id = append_stream_id_arg(fcinfo, 0);
	int64		expected = 0;
	bool		has_expected = append_expected_arg(fcinfo, 2, &expected);
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *elemnulls;
	int			n;
	int			i;
	AppendEvent *events;
	bool		ids_given = false;
	TupleDesc	desc = NULL;

	if (PG_ARGISNULL(1))
		append_null_argument("events");
	arr = PG_GETARG_ARRAYTYPE_P(1);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("events must be a one-dimensional array")));
	{
		int16		typlen;
		bool		typbyval;
		char		typalign;

		get_typlenbyvalalign(ARR_ELEMTYPE(arr), &typlen, &typbyval, &typalign);
		deconstruct_array(arr, ARR_ELEMTYPE(arr), typlen, typbyval, typalign,
						  &elems, &elemnulls, &n);
	}
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must not be empty"),
				 errhint("Append at least one event.")));

	events = palloc(sizeof(AppendEvent) * n);
	for (i = 0; i < n; i++)
	{
		HeapTupleHeader rec;
		HeapTupleData tuple;
		Datum		f[5];
		bool		fn[5];

		if (elemnulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("event %d must not be null", i + 1)));
		rec = DatumGetHeapTupleHeader(elems[i]);
		if (desc == NULL)
			desc = lookup_rowtype_tupdesc_copy(HeapTupleHeaderGetTypeId(rec),
											   HeapTupleHeaderGetTypMod(rec));
		tuple.t_len = HeapTupleHeaderGetDatumLength(rec);
		ItemPointerSetInvalid(&tuple.t_self);
		tuple.t_tableOid = InvalidOid;
		tuple.t_data = rec;
		heap_deform_tuple(&tuple, desc, f, fn);

		ids_given |= append_fill_event(&events[i], i + 1,
									   fn[0] ? NULL : DatumGetTextPP(f[0]),
									   fn[1] ? NULL : DatumGetJsonbP(f[1]),
									   fn[2] ? NULL : DatumGetJsonbP(f[2]),
									   fn[3] ? NULL : DatumGetUUIDP(f[3]),
									   !fn[4],
									   fn[4] ? 1 : DatumGetInt32(f[4]));
	}

	PG_RETURN_INT64(append_events(stream_id, events, n, ids_given,
								  has_expected, expected));
}

/* The value of key "key" in a JSON object, or NULL when absent or null */
static JsonbValue *
append_json_key(JsonbContainer *obj, const char *key, enum jbvType want,
				int n, const char *what)
{
	JsonbValue *v = getKeyJsonValueFromContainer(obj, key, strlen(key), NULL);

	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (want != jbvBinary && v->type != want)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key \"%s\" of event %d must be %s", key, n, what)));
	if (want == jbvBinary &&
		(v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key \"%s\" of event %d must be a JSON object", key, n)));
	return v;
}

PG_FUNCTION_INFO_V1(es_append_json);

/*
 * es.append_json(stream_id, events jsonb, expected_version): events is a
 * JSON array of {"type", "data", "metadata", "id", "schema_version"}.
 */
Datum
es_append_json(PG_FUNCTION_ARGS)
{
	text	   *stream_id = append_stream_id_arg(fcinfo, 0);
	int64		expected = 0;
	bool		has_expected = append_expected_arg(fcinfo, 2, &expected);
	Jsonb	   *arr;
	int			n;
	int			i;
	AppendEvent *events;
	bool		ids_given = false;
	static const char *const known[] = {"type", "data", "metadata", "id", "schema_version"};

	if (PG_ARGISNULL(1))
		append_null_argument("events");
	arr = PG_GETARG_JSONB_P(1);
	if (!JB_ROOT_IS_ARRAY(arr) || JB_ROOT_IS_SCALAR(arr))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must be a JSON array of event objects")));
	n = JB_ROOT_COUNT(arr);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must not be empty"),
				 errhint("Append at least one event.")));

	events = palloc(sizeof(AppendEvent) * n);
	for (i = 0; i < n; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(&arr->root, i);
		JsonbContainer *obj;
		JsonbValue *v;
		JsonbIterator *it;
		JsonbValue	kv;
		JsonbIteratorToken tok;
		text	   *type = NULL;
		Jsonb	   *data = NULL;
		Jsonb	   *metadata = NULL;
		pg_uuid_t  *id = NULL;
		bool		schema_given = false;
		int32		schema_version = 1;

		if (elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("event %d must be a JSON object", i + 1)));
		obj = elem->val.binary.data;

		/* unknown keys are mistakes worth reporting */
		it = JsonbIteratorInit(obj);
		while ((tok = JsonbIteratorNext(&it, &kv, true)) != WJB_DONE)
		{
			bool		ok = false;

			if (tok != WJB_KEY)
				continue;
			for (int k = 0; k < lengthof(known); k++)
				if (kv.val.string.len == strlen(known[k]) &&
					memcmp(kv.val.string.val, known[k], kv.val.string.len) == 0)
					ok = true;
			if (!ok)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("unknown key \"%.*s\" in event %d",
								kv.val.string.len, kv.val.string.val, i + 1),
						 errhint("The keys are type, data, metadata, id and schema_version.")));
		}

		if ((v = append_json_key(obj, "type", jbvString, i + 1, "a string")) != NULL)
			type = cstring_to_text_with_len(v->val.string.val, v->val.string.len);
		if ((v = getKeyJsonValueFromContainer(obj, "data", 4, NULL)) != NULL &&
			v->type != jbvNull)
			data = JsonbValueToJsonb(v);
		if ((v = append_json_key(obj, "metadata", jbvBinary, i + 1, "an object")) != NULL)
			metadata = JsonbValueToJsonb(v);
		if ((v = append_json_key(obj, "id", jbvString, i + 1, "a UUID string")) != NULL)
			id = DatumGetUUIDP(DirectFunctionCall1(uuid_in,
												   CStringGetDatum(pnstrdup(v->val.string.val,
																			v->val.string.len))));
		if ((v = append_json_key(obj, "schema_version", jbvNumeric, i + 1, "a number")) != NULL)
		{
			schema_given = true;
			schema_version = DatumGetInt32(DirectFunctionCall1(numeric_int4,
															   NumericGetDatum(v->val.numeric)));
		}

		ids_given |= append_fill_event(&events[i], i + 1, type, data, metadata,
									   id, schema_given, schema_version);
	}

	PG_RETURN_INT64(append_events(stream_id, events, n, ids_given,
								  has_expected, expected));
}
