/*-------------------------------------------------------------------------
 *
 * read_int.h
 *	  What read.c (stream reads), read_global.c (gap-safe global and
 *	  category reads) and read_row.c (the rows of their results) share.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ES_READ_INT_H
#define ES_READ_INT_H

#include "access/htup.h"
#include "fmgr.h"
#include "nodes/pg_list.h"
#include "utils/snapshot.h"
#include "utils/tuplestore.h"

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

/* A buffer in which read_row.c builds rows, kept from row to row */
typedef struct ReadRowBuf
{
	MemoryContext cxt;
	char	   *data;
	Size		size;
} ReadRowBuf;

/* read_row.c */
extern void read_materialize(FunctionCallInfo fcinfo);
extern int	read_stored_tail(TupleDesc stored, TupleDesc result);
extern Size read_stored_len(HeapTuple stored, int natts, int tail);
extern void read_stored_values(HeapTuple stored, Datum *values, bool *nulls);
extern HeapTuple read_stored_event(HeapTuple stored, Size len, TupleDesc desc);
extern void read_put_stored(Tuplestorestate *result, HeapTuple stored, Size len,
							ReadRowBuf *buf);
extern bool read_put_upcast(Tuplestorestate *result, HeapTuple stored,
							const Datum *values, ReadRowBuf *buf);

#endif							/* ES_READ_INT_H */
