/*-------------------------------------------------------------------------
 *
 * append_call.c
 *	  The SQL entry points of appends: es.append_event, es.append and
 *	  es.append_json, and their try_ variants, which read and check their
 *	  arguments and hand the events to append_events (append.c).
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "es.h"
#include "append_int.h"

/*
 * es.append_event and es.try_append_event: (stream_id, event_type, data,
 * metadata, expected_version, event_id, schema_version)
 */
static Datum
append_event_call(FunctionCallInfo fcinfo, bool try_only)
{
	text	   *stream_id = append_stream_id_arg(fcinfo, 0);
	AppendEvent ev;
	int64		expected = 0;
	bool		has_expected = append_expected_arg(fcinfo, 4, &expected, try_only);
	bool		ids_given;
	bool		stale;
	int64		version;

	ids_given = append_fill_event(&ev, 1,
								  PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1),
								  PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2),
								  PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3),
								  PG_ARGISNULL(5) ? NULL : PG_GETARG_UUID_P(5),
								  !PG_ARGISNULL(6),
								  PG_ARGISNULL(6) ? 1 : PG_GETARG_INT32(6));

	version = append_events(stream_id, &ev, 1, ids_given,
							has_expected, expected, try_only, &stale);
	if (stale)
		PG_RETURN_NULL();
	PG_RETURN_INT64(version);
}

PG_FUNCTION_INFO_V1(es_append_event);

/* es.append_event(...): one event */
Datum
es_append_event(PG_FUNCTION_ARGS)
{
	return append_event_call(fcinfo, false);
}

PG_FUNCTION_INFO_V1(es_try_append_event);

/* es.try_append_event(...): one event, NULL for a stale expected version */
Datum
es_try_append_event(PG_FUNCTION_ARGS)
{
	return append_event_call(fcinfo, true);
}

/* es.append and es.try_append: (stream_id, events es.new_event[], expected_version) */
static Datum
append_array_call(FunctionCallInfo fcinfo, bool try_only)
{
	text	   *stream_id = append_stream_id_arg(fcinfo, 0);
	int64		expected = 0;
	bool		has_expected = append_expected_arg(fcinfo, 2, &expected, try_only);
	bool		stale;
	int64		version;
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

		CHECK_FOR_INTERRUPTS();
		if (elemnulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("event %d must not be null", i + 1)));
		rec = DatumGetHeapTupleHeader(elems[i]);
		if (desc == NULL)
		{
			desc = lookup_rowtype_tupdesc_copy(HeapTupleHeaderGetTypeId(rec),
											   HeapTupleHeaderGetTypMod(rec));
			/* f and fn hold es.new_event's 5 attributes, no more */
			es_check_row_type(desc, ES_ROW_NEW_EVENT);
		}
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

	version = append_events(stream_id, events, n, ids_given,
							has_expected, expected, try_only, &stale);
	if (stale)
		PG_RETURN_NULL();
	PG_RETURN_INT64(version);
}

PG_FUNCTION_INFO_V1(es_append);

/* es.append(stream_id, events es.new_event[], expected_version) */
Datum
es_append(PG_FUNCTION_ARGS)
{
	return append_array_call(fcinfo, false);
}

PG_FUNCTION_INFO_V1(es_try_append);

/* es.try_append(...): es.append, NULL for a stale expected version */
Datum
es_try_append(PG_FUNCTION_ARGS)
{
	return append_array_call(fcinfo, true);
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

/*
 * es.append_json and es.try_append_json: (stream_id, events jsonb,
 * expected_version), events a JSON array of {"type", "data", "metadata",
 * "id", "schema_version"}.
 */
static Datum
append_json_call(FunctionCallInfo fcinfo, bool try_only)
{
	text	   *stream_id = append_stream_id_arg(fcinfo, 0);
	int64		expected = 0;
	bool		has_expected = append_expected_arg(fcinfo, 2, &expected, try_only);
	bool		stale;
	int64		version;
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

		CHECK_FOR_INTERRUPTS();
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
			Numeric		num = v->val.numeric;

			schema_given = true;
			if (!DatumGetBool(DirectFunctionCall2(numeric_eq, NumericGetDatum(num),
												  DirectFunctionCall2(numeric_trunc,
																	  NumericGetDatum(num),
																	  Int32GetDatum(0)))) ||
				DatumGetBool(DirectFunctionCall2(numeric_gt, NumericGetDatum(num),
												 DirectFunctionCall1(int4_numeric,
																	 Int32GetDatum(PG_INT32_MAX)))) ||
				DatumGetBool(DirectFunctionCall2(numeric_lt, NumericGetDatum(num),
												 DirectFunctionCall1(int4_numeric,
																	 Int32GetDatum(PG_INT32_MIN)))))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("key \"schema_version\" of event %d must be a whole number", i + 1)));
			schema_version = DatumGetInt32(DirectFunctionCall1(numeric_int4,
															   NumericGetDatum(num)));
		}

		ids_given |= append_fill_event(&events[i], i + 1, type, data, metadata,
									   id, schema_given, schema_version);
	}

	version = append_events(stream_id, events, n, ids_given,
							has_expected, expected, try_only, &stale);
	if (stale)
		PG_RETURN_NULL();
	PG_RETURN_INT64(version);
}

PG_FUNCTION_INFO_V1(es_append_json);

/* es.append_json(stream_id, events jsonb, expected_version) */
Datum
es_append_json(PG_FUNCTION_ARGS)
{
	return append_json_call(fcinfo, false);
}

PG_FUNCTION_INFO_V1(es_try_append_json);

/* es.try_append_json(...): es.append_json, NULL for a stale expected version */
Datum
es_try_append_json(PG_FUNCTION_ARGS)
{
	return append_json_call(fcinfo, true);
}
