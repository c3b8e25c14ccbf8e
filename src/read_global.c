/*-------------------------------------------------------------------------
 *
 * read_global.c
 *	  es.read_all and es.read_category: reads in global position order that
 *	  stop below the gap-safe horizon (horizon.c), so that no event can
 *	  later appear before one already returned.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "es.h"
#include "read_int.h"


/*
 * Shared part of the gap-safe reads: values[0..3] are from_position (the
 * argument number from_arg), the horizon, event types and max_count (the
 * next argument); the category read adds its own.  "types" are the event
 * types asked for, NIL for all.  values[hidden_param] gets whether events
 * hidden by stream deletes and retention must be looked for.
 */
static void
read_gap_safe(FunctionCallInfo fcinfo, int from_arg, ReadPlan plain,
			  ReadPlan xmin_rule, Datum *values, char *nulls, List *types,
			  int hidden_param)
{
	int64		from_position = PG_ARGISNULL(from_arg) ? 0 : PG_GETARG_INT64(from_arg);
	int64		horizon;
	int64		limit;
	List	   *post_types = NIL;
	Snapshot	snap;
	ReadPlan	which;

	if (from_position < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_position must not be negative, not " INT64_FORMAT,
						from_position)));
	values[0] = Int64GetDatum(from_position);
	values[3] = read_max_count_arg(fcinfo, from_arg + 1, &nulls[3]);
	limit = nulls[3] == 'n' ? -1 : DatumGetInt64(values[3]);

	upcast_begin();
	values[hidden_param] = BoolGetDatum(lifecycle_in_use());
	nulls[hidden_param] = ' ';
	if (types != NIL && upcast_any())
	{
		/*
		 * Types are those of the upcast events: look for the stored types
		 * that can become them, and keep only events that do.
		 */
		List	   *sources = upcast_source_types(types);

		if (sources != NIL)
			values[2] = read_text_array(sources);
		post_types = types;
	}

	/*
	 * On a hot standby nobody registers open appends (they run on the
	 * primary), but the standby's snapshots know the primary's open
	 * transactions: the xmin rule applies there.  The snapshot is registered
	 * with the resource owner, so it is released on error too.
	 */
	if (horizon_enabled() && !RecoveryInProgress())
	{
		snap = horizon_snapshot(&horizon);
		which = plain;
	}
	else
	{
		snap = RegisterSnapshot(GetTransactionSnapshot());
		horizon = PG_INT64_MAX;
		which = xmin_rule;
	}
	values[1] = Int64GetDatum(horizon);
	read_events(fcinfo, which, values, nulls, snap, post_types, limit);
	UnregisterSnapshot(snap);
	upcast_end();
}

/* A list of C strings as a text[] datum */
Datum
read_text_array(List *names)
{
	Datum	   *elems = palloc(sizeof(Datum) * list_length(names));
	ListCell   *lc;
	int			i = 0;

	foreach(lc, names)
		elems[i++] = CStringGetTextDatum(lfirst(lc));
	return PointerGetDatum(construct_array(elems, i, TEXTOID, -1, false, TYPALIGN_INT));
}

/* A text[] argument as a list of C strings (NULL elements are skipped) */
static List *
read_text_list(Datum arr)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	List	   *result = NIL;

	deconstruct_array(DatumGetArrayTypeP(arr), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	for (i = 0; i < n; i++)
		if (!nulls[i])
			result = lappend(result, TextDatumGetCString(elems[i]));
	return result;
}

PG_FUNCTION_INFO_V1(es_read_all);

/* es.read_all(from_position, max_count, event_types) */
Datum
es_read_all(PG_FUNCTION_ARGS)
{
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	List	   *types = NIL;

	values[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[2] = PG_ARGISNULL(2) ? 'n' : ' ';
	if (!PG_ARGISNULL(2))
		types = read_text_list(values[2]);
	read_gap_safe(fcinfo, 0, READ_ALL, READ_ALL_XMIN, values, nulls, types, 4);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(es_read_category);

/*
 * es.read_category(category, from_position, max_count,
 *					consumer_group_member, consumer_group_size)
 */
Datum
es_read_category(PG_FUNCTION_ARGS)
{
	Datum		values[8];
	char		nulls[8] = {' ', ' ', 'n', ' ', ' ', 'n', 'n', ' '};
	text	   *category;
	char	   *cat;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("category must not be null")));
	category = PG_GETARG_TEXT_PP(0);
	cat = text_to_cstring(category);
	/* "" is allowed: it is the category of stream ids that start with "-" */
	if (strchr(cat, '-') != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("category \"%s\" must not contain \"-\"", cat),
				 errdetail("A stream's category is the part of its id before the first \"-\".")));
	values[4] = PointerGetDatum(category);

	if (PG_ARGISNULL(3) != PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("consumer_group_member and consumer_group_size must be given together")));
	if (!PG_ARGISNULL(3))
	{
		int32		member = PG_GETARG_INT32(3);
		int32		size = PG_GETARG_INT32(4);

		if (size < 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("consumer_group_size must be at least 1, not %d", size)));
		if (member < 0 || member >= size)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("consumer_group_member must be between 0 and %d, not %d",
							size - 1, member)));
		values[5] = Int32GetDatum(member);
		values[6] = Int32GetDatum(size);
		nulls[5] = nulls[6] = ' ';
	}
	values[2] = (Datum) 0;
	read_gap_safe(fcinfo, 1, READ_CATEGORY, READ_CATEGORY_XMIN, values, nulls, NIL, 7);
	return (Datum) 0;
}
