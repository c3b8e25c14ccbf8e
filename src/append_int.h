/*-------------------------------------------------------------------------
 *
 * append_int.h
 *	  What append.c (checking and inserting) and append_call.c (the SQL
 *	  entry points) share.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ES_APPEND_INT_H
#define ES_APPEND_INT_H

#include "fmgr.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

/* One event to append, validated and normalized */
typedef struct AppendEvent
{
	Datum		event_type;		/* text */
	Datum		data;			/* jsonb object */
	Datum		metadata;		/* jsonb object */
	Datum		event_id;		/* uuid */
	Datum		schema_version; /* int4 */
} AppendEvent;

extern void append_null_argument(const char *name);
extern text *append_stream_id_arg(FunctionCallInfo fcinfo, int argno);
extern bool append_expected_arg(FunctionCallInfo fcinfo, int argno, int64 *expected,
								bool try_only);
extern bool append_fill_event(AppendEvent *ev, int n, text *event_type, Jsonb *data,
							  Jsonb *metadata, pg_uuid_t *event_id, bool schema_given,
							  int32 schema_version);
extern int64 append_events(text *stream_id, AppendEvent *events, int n, bool ids_given,
						   bool has_expected, int64 expected, bool try_only, bool *stale);

#endif							/* ES_APPEND_INT_H */
