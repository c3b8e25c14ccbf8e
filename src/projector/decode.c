/*-------------------------------------------------------------------------
 *
 * decode.c
 *	  Decoding: the projector reads the WAL through its replication slot
 *	  and PostgreSQL's own pgoutput (the publication es_events), and keeps,
 *	  for each committed transaction, in commit order, the global positions
 *	  of the es.events rows it inserted (DecodedXact).
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlogutils.h"
#include "libpq/pqformat.h"
#include "nodes/makefuncs.h"
#include "replication/decode.h"
#include "storage/ipc.h"
#include "storage/pmsignal.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "es.h"
#include "projector/projector.h"

static MemoryContext decode_cxt = NULL;
List	   *decoded_xacts = NIL;	/* complete transactions, commit order */
static int	decoded_events = 0;
static DecodedXact *current = NULL;
LogicalDecodingContext *decoding = NULL;
XLogRecPtr	processed_upto = InvalidXLogRecPtr;
Oid			events_relid = InvalidOid;
bool		foreign_relation_logged = false;

/* ------------------------------------------------------------------------
 * Decoding
 * ------------------------------------------------------------------------
 */

static void
decode_prepare_write(LogicalDecodingContext *ctx, XLogRecPtr lsn,
					 TransactionId xid, bool last_write)
{
	resetStringInfo(ctx->out);
}

/*
 * pgoutput sent a change of a relation that is not es.events: the
 * publication publishes more than es's own (it is verified when the
 * projector attaches, so only a superuser could have changed it since).
 * Its rows are ignored; say so once per attach.
 */
static void
decode_foreign_relation(LogicalRepRelId relid)
{
	if (foreign_relation_logged)
		return;
	foreign_relation_logged = true;
	ereport(WARNING,
			(errmsg("es projector: ignoring the decoded changes of relation %u, which is not es.events",
					relid),
			 errhint("The publication es_events must publish es.events only.")));
}

/* pgoutput's messages: keep the positions of each committed transaction */
static void
decode_write(LogicalDecodingContext *ctx, XLogRecPtr lsn,
			 TransactionId xid, bool last_write)
{
	StringInfoData in;
	MemoryContext old = MemoryContextSwitchTo(decode_cxt);

	in.data = ctx->out->data;
	in.len = ctx->out->len;
	in.maxlen = ctx->out->maxlen;
	in.cursor = 0;
	switch (pq_getmsgbyte(&in))
	{
		case LOGICAL_REP_MSG_BEGIN:
			{
				LogicalRepBeginData begin;

				logicalrep_read_begin(&in, &begin);
				current = palloc0(sizeof(DecodedXact));
				current->xid = begin.xid;
				current->maxpositions = 8;
				current->positions = palloc(sizeof(int64) * 8);
				break;
			}
		case LOGICAL_REP_MSG_RELATION:
			{
				LogicalRepRelation *rel = logicalrep_read_rel(&in);

				if (rel->remoteid != events_relid)
					decode_foreign_relation(rel->remoteid);
				break;
			}
		case LOGICAL_REP_MSG_INSERT:
			{
				LogicalRepTupleData tup;
				LogicalRepRelId relid = logicalrep_read_insert(&in, &tup);

				/* a row of another relation is no event position */
				if (relid != events_relid)
				{
					decode_foreign_relation(relid);
					break;
				}
				if (current != NULL && tup.ncols >= 1 &&
					tup.colstatus[0] == LOGICALREP_COLUMN_TEXT)
				{
					if (current->npositions == current->maxpositions)
					{
						current->maxpositions *= 2;
						current->positions = repalloc(current->positions,
													  sizeof(int64) * current->maxpositions);
					}
					current->positions[current->npositions++] =
						pg_strtoint64(tup.colvalues[0].data);
					decoded_events++;
				}
				break;
			}
		case LOGICAL_REP_MSG_COMMIT:
			{
				LogicalRepCommitData commit;

				logicalrep_read_commit(&in, &commit);
				if (current != NULL)
				{
					current->end_lsn = commit.end_lsn;
					if (current->npositions > 0)
						decoded_xacts = lappend(decoded_xacts, current);
					current = NULL;
				}
				break;
			}
		default:
			/* type and origin messages, other changes: not needed */
			break;
	}
	MemoryContextSwitchTo(old);
}

static void decoding_mark(bool on);

/* The decoder's memory, for the decoded transactions of a batch */
void
decoding_init(void)
{
	decode_cxt = AllocSetContextCreate(TopMemoryContext, "es decoded",
									   ALLOCSET_DEFAULT_SIZES);
}

/* The batch was applied: forget its transactions */
void
decoding_reset(void)
{
	decoded_xacts = NIL;
	decoded_events = 0;
	current = NULL;
	MemoryContextReset(decode_cxt);
}

/* Start decoding where the slot was confirmed */
void
decoding_start(void)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	List	   *options;

	options = list_make2(makeDefElem("proto_version", (Node *) makeString("1"), -1),
						 makeDefElem("publication_names", (Node *) makeString("es_events"), -1));
	decoding = CreateDecodingContext(InvalidXLogRecPtr, options, false,
									 XL_ROUTINE(.page_read = read_local_xlog_page,
												.segment_open = wal_segment_open,
												.segment_close = wal_segment_close),
									 decode_prepare_write, decode_write, NULL);
	XLogBeginRead(decoding->reader, MyReplicationSlot->data.restart_lsn);
	decoding_mark(false);
	processed_upto = MyReplicationSlot->data.confirmed_flush;
	MemoryContextSwitchTo(old);
}

void
decoding_stop(void)
{
	if (decoding != NULL)
		FreeDecodingContext(decoding);
	decoding = NULL;
	decoding_reset();
}

/*
 * CreateDecodingContext marks this process as one that decodes: its xmin
 * then counts for catalogs only, and other sessions may prune row versions
 * of ordinary tables that its snapshots still need.  A walsender does
 * nothing else; the projector also runs transactions on the read tables
 * and es.projections, so it carries the mark only while it decodes.
 */
static void
decoding_mark(bool on)
{
	LWLockAcquire(ProcArrayLock, LW_EXCLUSIVE);
	if (on)
		MyProc->statusFlags |= PROC_IN_LOGICAL_DECODING;
	else
		MyProc->statusFlags &= ~PROC_IN_LOGICAL_DECODING;
	ProcGlobal->statusFlags[MyProc->pgxactoff] = MyProc->statusFlags;
	LWLockRelease(ProcArrayLock);
}

/* Decode what was flushed, up to a batch; returns the decode position */
XLogRecPtr
decoding_read(void)
{
	XLogRecPtr	flush = GetFlushRecPtr(NULL);

	Assert(!IsTransactionState());
	decoding_mark(true);

	while (decoding->reader->EndRecPtr < flush &&
		   list_length(decoded_xacts) < DECODE_MAX_XACTS &&
		   decoded_events < DECODE_MAX_EVENTS)
	{
		char	   *errm = NULL;
		XLogRecord *record = XLogReadRecord(decoding->reader, &errm);

		if (errm)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("es projector: could not read WAL: %s", errm)));
		if (record != NULL)
			LogicalDecodingProcessRecord(decoding, decoding->reader);
		CHECK_FOR_INTERRUPTS();
		if (!PostmasterIsAlive())
			proc_exit(1);
	}
	decoding_mark(false);
	return decoding->reader->EndRecPtr;
}
