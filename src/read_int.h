/*-------------------------------------------------------------------------
 *
 * read_int.h
 *	  What read.c (stream reads) and read_global.c (gap-safe global and
 *	  category reads) share.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ES_READ_INT_H
#define ES_READ_INT_H

#include "fmgr.h"
#include "nodes/pg_list.h"
#include "utils/snapshot.h"

/* The read plans (read.c), prepared once per backend */
typedef enum ReadPlan
{
	READ_STREAM_FORWARD,
	READ_STREAM_BACKWARD,
	READ_ALL,
	READ_ALL_XMIN,
	READ_CATEGORY,
	READ_CATEGORY_XMIN,
	READ_LAST_EVENT,
	READ_NPLANS
} ReadPlan;

extern void read_events(FunctionCallInfo fcinfo, ReadPlan which, Datum *values,
						char *nulls, Snapshot snapshot, List *post_types, int64 limit);
extern Datum read_max_count_arg(FunctionCallInfo fcinfo, int argno, char *null);
extern Datum read_text_array(List *names);

#endif							/* ES_READ_INT_H */
