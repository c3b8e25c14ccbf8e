/*-------------------------------------------------------------------------
 *
 * read_row.c
 *	  The rows of es's set-returning reads: the memory they live in, and
 *	  how an event read from es.events becomes a row of es.event.
 *
 * A set-returning function hands its rows over in a tuplestore, which the
 * executor reads before it sends any row: every row a read returns is
 * built, copied into the tuplestore and taken apart again to be sent.  The
 * rows built here cost as little of that as they can: an event that needs
 * no upcasting is its stored row's bytes, cut after its es.event columns
 * (es.events begins with them, in that order); an upcast one is built from
 * those bytes and its new type, schema version and data, without taking
 * the stored row apart and forming it again from values.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/tupmacs.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"

#include "es.h"
#include "read_int.h"

/*
 * The memory of the results of es's reads.  A set-returning function hands
 * its rows over in a tuplestore that lives as long as the query; made in the
 * query's memory, the rows of each read (a few MB for 10k events) would go
 * to fresh memory every time, each page taken with a page fault and handed
 * back to the system when the query ends.  Made here instead, the rows that
 * the tuplestore frees when the query is done with them are reused by the
 * next read.  The rows of a query that failed are not freed by it: they stay
 * until the context is reset, which happens when no result is in use and
 * the context has grown past READ_RESULT_KEEP, so that the memory kept,
 * free or not, stays about that size.  (From PostgreSQL 17 on, a tuplestore
 * keeps its rows in a memory context of its own, a child of this one, that
 * it deletes when it ends: then only its state is kept here, and the rows
 * go to fresh memory each time as before.)
 */
#define READ_RESULT_KEEP	(8 * 1024 * 1024)

static MemoryContext read_result_cxt = NULL;
static int	read_result_users = 0;	/* queries whose result is in it */

/* A query that used a result of read_result_cxt is over (ended or failed) */
static void
read_result_done(void *arg)
{
	if (read_result_users > 0)
		read_result_users--;
	if (read_result_users == 0 &&
		MemoryContextMemAllocated(read_result_cxt, true) > READ_RESULT_KEEP)
		MemoryContextReset(read_result_cxt);
}

/*
 * Start the result of a set-returning read (as InitMaterializedSRF with
 * MAT_SRF_USE_EXPECTED_DESC), its rows in read_result_cxt.
 */
void
read_materialize(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext per_query;
	MemoryContext old;
	MemoryContextCallback *cb;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	if (!(rsinfo->allowedModes & SFRM_Materialize) || rsinfo->expectedDesc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("materialize mode required, but it is not allowed in this context")));
	if (read_result_cxt == NULL)
		read_result_cxt = AllocSetContextCreate(TopMemoryContext, "es read results",
												ALLOCSET_DEFAULT_SIZES);
	per_query = rsinfo->econtext->ecxt_per_query_memory;
	old = MemoryContextSwitchTo(per_query);
	rsinfo->setDesc = CreateTupleDescCopy(rsinfo->expectedDesc);
	cb = palloc(sizeof(MemoryContextCallback));
	cb->func = read_result_done;
	cb->arg = NULL;
	MemoryContextRegisterResetCallback(per_query, cb);
	read_result_users++;
	MemoryContextSwitchTo(read_result_cxt);
	rsinfo->setResult = tuplestore_begin_heap((rsinfo->allowedModes & SFRM_Materialize_Random) != 0,
											  false, work_mem);
	rsinfo->returnMode = SFRM_Materialize;
	MemoryContextSwitchTo(old);
}

/*
 * How many bytes of stored columns follow es.event's columns in a row of
 * es.events, or -1 when its rows cannot be copied as rows of es.event.
 * They can when the table begins with es.event's columns (as "result"
 * has them, in that order, none dropped) and the columns after them are
 * of fixed lengths that keep them aligned (the transaction id): then the
 * first READ_NATTS columns of a stored row, with no null, are its bytes up
 * to that many from its end, laid out exactly as heap_form_minimal_tuple
 * would lay out the same values.
 */
int
read_stored_tail(TupleDesc stored, TupleDesc result)
{
	int			tail = 0;
	int			i;

	if (stored->natts < READ_NATTS || result->natts != READ_NATTS)
		return -1;
	for (i = 0; i < stored->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(stored, i);

		if (att->attisdropped)
			return -1;
		if (i < READ_NATTS)
		{
			if (att->atttypid != TupleDescAttr(result, i)->atttypid)
				return -1;
		}
		else if (att->attlen <= 0 || att->attlen % ALIGNOF_DOUBLE != 0)
			return -1;
		else
			tail += att->attlen;
	}
	/* recorded_at ends aligned for whatever follows it */
	if (TupleDescAttr(stored, READ_NATTS - 1)->attlen != 8 ||
		TupleDescAttr(stored, READ_NATTS - 1)->attalign != TYPALIGN_DOUBLE)
		return -1;
	return tail;
}

/* Room for "len" bytes in a row buffer */
static char *
read_row_reserve(ReadRowBuf *buf, Size len)
{
	if (len > buf->size)
	{
		buf->data = buf->data == NULL ? MemoryContextAlloc(buf->cxt, len) :
			repalloc(buf->data, len);
		buf->size = len;
	}
	return buf->data;
}

/*
 * The length (header included) of the es.event columns of a stored row of
 * es.events ("natts" columns), or 0 when the row is not of the kind that
 * read_put_stored, read_stored_values and read_put_upcast take: one
 * without a null, with the table's number of columns or with only
 * es.event's.  "tail" is read_stored_tail's (-1: none is of that kind).
 */
Size
read_stored_len(HeapTuple stored, int natts, int tail)
{
	int			n = HeapTupleHeaderGetNatts(stored->t_data);

	if (tail < 0 || HeapTupleHasNulls(stored))
		return 0;
	if (n == natts)
		return stored->t_len - tail;
	if (n == READ_NATTS)
		return stored->t_len;	/* written before the columns after them */
	return 0;
}

/*
 * Take apart the es.event columns of a stored row of the kind above: what
 * heap_deform_tuple gives, found directly from the types of those columns
 * (checked by read_stored_tail), not from a walk of the tuple descriptor.
 */
void
read_stored_values(HeapTuple stored, Datum *values, bool *nulls)
{
	char	   *tp = (char *) stored->t_data + stored->t_data->t_hoff;
	uintptr_t	off = 0;

#define READ_FIXED(att, type, len, align) \
	do { \
		off = att_align_nominal(off, align); \
		values[(att) - 1] = fetch_att(tp + off, true, len); \
		off += (len); \
	} while (0)
#define READ_VARLENA(att) \
	do { \
		off = att_align_pointer(off, TYPALIGN_INT, -1, tp + off); \
		values[(att) - 1] = PointerGetDatum(tp + off); \
		off = att_addlength_pointer(off, -1, tp + off); \
	} while (0)

	READ_FIXED(READ_ATT_GLOBAL_POSITION, int64, sizeof(int64), TYPALIGN_DOUBLE);
	READ_VARLENA(READ_ATT_STREAM_ID);
	READ_FIXED(READ_ATT_STREAM_VERSION, int64, sizeof(int64), TYPALIGN_DOUBLE);
	/* the event id, a uuid: by reference, not aligned */
	values[READ_ATT_EVENT_ID - 1] = PointerGetDatum(tp + off);
	off += UUID_LEN;
	READ_VARLENA(READ_ATT_EVENT_TYPE);
	READ_FIXED(READ_ATT_SCHEMA_VERSION, int32, sizeof(int32), TYPALIGN_INT);
	READ_VARLENA(READ_ATT_DATA);
	READ_VARLENA(READ_ATT_METADATA);
	READ_FIXED(READ_ATT_RECORDED_AT, int64, sizeof(int64), TYPALIGN_DOUBLE);
#undef READ_FIXED
#undef READ_VARLENA
	memset(nulls, 0, sizeof(bool) * READ_NATTS);
#ifdef USE_ASSERT_CHECKING
	{
		/* what heap_deform_tuple finds in the same row */
		TupleDesc	desc = lookup_rowtype_tupdesc(es_event_type_oid(), -1);
		Datum		v[READ_NATTS];
		bool		n[READ_NATTS];
		int			i;

		heap_deform_tuple(stored, desc, v, n);
		for (i = 0; i < READ_NATTS; i++)
			Assert(!n[i] && v[i] == values[i]);
		ReleaseTupleDesc(desc);
	}
#endif
}

/*
 * Put the row built in buf (its header and "len" bytes in all) into the
 * result as a row of es.event: its header says READ_NATTS columns, and
 * nothing about the stored row's visibility.
 */
static void
read_row_put(Tuplestorestate *result, ReadRowBuf *buf, Size len, bool external)
{
	HeapTupleHeader hdr = (HeapTupleHeader) buf->data;
	HeapTupleData row;

	HeapTupleHeaderSetNatts(hdr, READ_NATTS);
	hdr->t_infomask = HEAP_HASVARWIDTH | (external ? HEAP_HASEXTERNAL : 0);
	row.t_len = len;
	row.t_data = hdr;
	ItemPointerSetInvalid(&row.t_self);
	row.t_tableOid = InvalidOid;
	tuplestore_puttuple(result, &row);
}

/*
 * Put a stored event into a read's result as it is stored, cut after its
 * es.event columns ("len" bytes, read_stored_len's): one copy of its bytes.
 */
void
read_put_stored(Tuplestorestate *result, HeapTuple stored, Size len, ReadRowBuf *buf)
{
	memcpy(read_row_reserve(buf, len), stored->t_data, len);
	read_row_put(result, buf, len, HeapTupleHasExternal(stored));
}

/*
 * A stored event as a row of es.event ("desc") for a handler, in the
 * current memory context: its stored bytes, cut after its es.event columns
 * ("len", read_stored_len's) and said to have that many columns (in a
 * buffer kept from call to call), then made a composite datum by
 * heap_copy_tuple_as_datum: that sets whatever the server's minor release
 * marks datums with, and flattens values stored out of line.
 */
HeapTuple
read_stored_event(HeapTuple stored, Size len, TupleDesc desc)
{
	static ReadRowBuf buf = {0};
	HeapTupleData cut;
	HeapTuple	row = palloc(sizeof(HeapTupleData));

	if (buf.cxt == NULL)
		buf.cxt = TopMemoryContext;
	cut = *stored;
	cut.t_len = len;
	cut.t_data = (HeapTupleHeader) read_row_reserve(&buf, len);
	memcpy(cut.t_data, stored->t_data, len);
	HeapTupleHeaderSetNatts(cut.t_data, READ_NATTS);
	cut.t_data->t_infomask &= HEAP_HASVARWIDTH | HEAP_HASEXTERNAL;
	row->t_data = (HeapTupleHeader) DatumGetPointer(heap_copy_tuple_as_datum(&cut, desc));
	row->t_len = HeapTupleHeaderGetDatumLength(row->t_data);
	ItemPointerSetInvalid(&row->t_self);
	row->t_tableOid = InvalidOid;
	return row;
}

/*
 * Write a value of a text or jsonb column at "p" as heap_fill_tuple writes
 * it (a short header when it fits, else aligned for an int), padding with
 * zeros; returns where it ends.
 */
static char *
read_row_varlena(char *p, Datum value, bool *external)
{
	Pointer		val = DatumGetPointer(value);
	Size		len;

	if (VARATT_IS_EXTERNAL(val))
	{
		/* a pointer to a value stored out of line (not an expanded one) */
		*external = true;
		len = VARSIZE_EXTERNAL(val);
		memcpy(p, val, len);
	}
	else if (VARATT_IS_SHORT(val))
	{
		len = VARSIZE_SHORT(val);
		memcpy(p, val, len);
	}
	else if (VARATT_CAN_MAKE_SHORT(val))
	{
		len = VARATT_CONVERTED_SHORT_SIZE(val);
		SET_VARSIZE_SHORT(p, len);
		memcpy(p + 1, VARDATA(val), len - 1);
	}
	else
	{
		while (p != (char *) att_align_nominal(p, TYPALIGN_INT))
			*p++ = 0;
		len = VARSIZE(val);
		memcpy(p, val, len);
	}
	return p + len;
}

/*
 * Put an upcast event into a read's result: "stored" is its stored row (of
 * the kind read_stored_len takes), "values" its columns after upcasting,
 * which changes only the type, the schema version and the data: the other
 * values are the stored ones, pointing into the stored row.  The row is the
 * stored row's bytes up to the end of its event id, then the type, schema
 * version, data, metadata and recorded_at, laid out as heap_fill_tuple lays
 * them out.  Returns false, putting nothing, when a value is an expanded
 * object.
 */
bool
read_put_upcast(Tuplestorestate *result, HeapTuple stored, const Datum *values, ReadRowBuf *buf)
{
	char	   *prefix_end;
	Size		max;
	bool		external;
	char	   *p;
	int32		version = DatumGetInt32(values[READ_ATT_SCHEMA_VERSION - 1]);
	TimestampTz recorded_at = DatumGetTimestampTz(values[READ_ATT_RECORDED_AT - 1]);

	if (VARATT_IS_EXTERNAL_EXPANDED(DatumGetPointer(values[READ_ATT_EVENT_TYPE - 1])) ||
		VARATT_IS_EXTERNAL_EXPANDED(DatumGetPointer(values[READ_ATT_DATA - 1])) ||
		VARATT_IS_EXTERNAL_EXPANDED(DatumGetPointer(values[READ_ATT_METADATA - 1])))
		return false;
	/* the stored event id, a uuid, ends the columns no step changes */
	prefix_end = (char *) DatumGetPointer(values[READ_ATT_EVENT_ID - 1]) + UUID_LEN;
	Assert(prefix_end > (char *) stored->t_data && prefix_end < (char *) stored->t_data + stored->t_len);
	/* at most: the prefix, each value with its alignment, the fixed ones */
	max = (prefix_end - (char *) stored->t_data) +
		VARSIZE_ANY(DatumGetPointer(values[READ_ATT_EVENT_TYPE - 1])) +
		VARSIZE_ANY(DatumGetPointer(values[READ_ATT_DATA - 1])) +
		VARSIZE_ANY(DatumGetPointer(values[READ_ATT_METADATA - 1])) +
		3 * (ALIGNOF_INT - 1) + sizeof(int32) + (ALIGNOF_INT - 1) +
		sizeof(TimestampTz) + (ALIGNOF_DOUBLE - 1);
	p = read_row_reserve(buf, max);
	memcpy(p, stored->t_data, prefix_end - (char *) stored->t_data);
	p += prefix_end - (char *) stored->t_data;
	/* the stream id is the one value of the prefix that can be out of line */
	external = VARATT_IS_EXTERNAL(DatumGetPointer(values[READ_ATT_STREAM_ID - 1]));
	p = read_row_varlena(p, values[READ_ATT_EVENT_TYPE - 1], &external);
	while (p != (char *) att_align_nominal(p, TYPALIGN_INT))
		*p++ = 0;
	memcpy(p, &version, sizeof(int32));
	p += sizeof(int32);
	p = read_row_varlena(p, values[READ_ATT_DATA - 1], &external);
	p = read_row_varlena(p, values[READ_ATT_METADATA - 1], &external);
	while (p != (char *) att_align_nominal(p, TYPALIGN_DOUBLE))
		*p++ = 0;
	memcpy(p, &recorded_at, sizeof(TimestampTz));
	p += sizeof(TimestampTz);
	Assert(p - buf->data <= max);
	read_row_put(result, buf, p - buf->data, external);
	return true;
}
