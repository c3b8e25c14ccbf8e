/*-------------------------------------------------------------------------
 *
 * decode.c
 *	  Decoding: the projector reads the WAL through its replication slot
 *	  and PostgreSQL's own pgoutput (the publication es_events), and keeps,
 *	  for each committed transaction, in commit order, the global positions
 *	  of the es.events rows it inserted (DecodedXact), and logs them in
 *	  batch files that its projection workers read.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xlogutils.h"
#include "common/file_utils.h"
#include "libpq/pqformat.h"
#include "nodes/makefuncs.h"
#include "replication/decode.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/pmsignal.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "es.h"
#include "projector/projector.h"

static MemoryContext decode_cxt = NULL;
static XLogRecPtr logged_upto = InvalidXLogRecPtr;	/* in es.decoded_batches */

/* The projector's batch files, oldest first, when own_valid (decoded_trim) */
static XLogRecPtr *own_files = NULL;	/* in TopMemoryContext */
static int	nown = 0;
static int	maxown = 0;
static bool own_valid = false;

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

/* The full xid of a recently decoded transaction */
static FullTransactionId
full_xid(TransactionId xid)
{
	FullTransactionId next = ReadNextFullTransactionId();
	uint32		epoch = EpochFromFullTransactionId(next);

	if (xid > XidFromFullTransactionId(next))
		epoch--;
	return FullTransactionIdFromEpochAndXid(epoch, xid);
}

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
				current->fxid = full_xid(begin.xid);
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
	logged_upto = InvalidXLogRecPtr;	/* look again: es.decoded_batches may be new */
	own_valid = false;
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

/* ------------------------------------------------------------------------
 * The decoded transactions, kept for the projection workers
 *
 * One file per decoded batch that has events, named after the database and
 * the WAL end of its last commit, in PostgreSQL's directory of temporary
 * files (base/pgsql_tmp, which the server empties when it starts): the
 * commits' WAL ends, full transaction ids and event counts, then the
 * events' global positions.  A file is written under another name and
 * renamed, so a worker reads whole files only.  They live as long as the
 * server runs: the projector removes those of its database when it starts
 * in a fresh server (after a crash too), and decodes them again from its
 * slot, which it never confirms past a live projection's checkpoint.
 * ------------------------------------------------------------------------
 */

#define DECODED_DIR		"base/" PG_TEMP_FILES_DIR
#define DECODED_MAGIC	0x45534431	/* "ESD1" */

typedef struct DecodedFileHeader
{
	uint32		magic;
	int32		nxacts;
	int32		npositions;
} DecodedFileHeader;

static void
decoded_file_name(char *path, XLogRecPtr end, const char *suffix)
{
	snprintf(path, MAXPGPATH, "%s/%ses_%u_%016llX%s", DECODED_DIR,
			 PG_TEMP_FILE_PREFIX, MyDatabaseId, (unsigned long long) end, suffix);
}

static int
lsn_cmp(const ListCell *a, const ListCell *b)
{
	XLogRecPtr	x = *(XLogRecPtr *) lfirst(a);
	XLogRecPtr	y = *(XLogRecPtr *) lfirst(b);

	return x < y ? -1 : x > y ? 1 : 0;
}

/* The WAL ends of this database's batch files in (after, upto], sorted */
static List *
decoded_files(XLogRecPtr after, XLogRecPtr upto)
{
	DIR		   *dir = AllocateDir(DECODED_DIR);
	struct dirent *de;
	List	   *ends = NIL;
	char		prefix[64];
	size_t		plen;

	snprintf(prefix, sizeof(prefix), "%ses_%u_", PG_TEMP_FILE_PREFIX, MyDatabaseId);
	plen = strlen(prefix);
	/* no directory yet: no file */
	while (dir != NULL && (de = ReadDirExtended(dir, DECODED_DIR, LOG)) != NULL)
	{
		char	   *endp;
		unsigned long long v;

		if (strncmp(de->d_name, prefix, plen) != 0 || strlen(de->d_name) != plen + 16)
			continue;
		v = strtoull(de->d_name + plen, &endp, 16);
		if (*endp != '\0' || (XLogRecPtr) v <= after || (XLogRecPtr) v > upto)
			continue;
		ends = lappend(ends, memcpy(palloc(sizeof(XLogRecPtr)), &v, sizeof(XLogRecPtr)));
	}
	if (dir != NULL)
		FreeDir(dir);
	list_sort(ends, lsn_cmp);
	return ends;
}

/*
 * The projector's batch files, oldest first: read from the directory when
 * it looks at what was logged (decoded_last), then kept up to date as it
 * writes and removes them, so that it does not read the directory for
 * each batch (a projection that falls behind keeps thousands of files):
 * own_files (decoded_last, own_add, decoded_trim).
 */

static void
own_add(XLogRecPtr end)
{
	if (nown == maxown)
	{
		maxown = Max(64, maxown * 2);
		own_files = own_files == NULL ?
			MemoryContextAlloc(TopMemoryContext, sizeof(XLogRecPtr) * maxown) :
			repalloc(own_files, sizeof(XLogRecPtr) * maxown);
	}
	own_files[nown++] = end;
}

/* The WAL end of the last logged commit (1: none), from the files */
static XLogRecPtr
decoded_last(void)
{
	List	   *ends = decoded_files(InvalidXLogRecPtr, PG_UINT64_MAX);
	ListCell   *lc;

	nown = 0;
	foreach(lc, ends)
		own_add(*(XLogRecPtr *) lfirst(lc));
	own_valid = true;
	list_free_deep(ends);
	return nown > 0 ? own_files[nown - 1] : 1;
}

/*
 * Remove this database's batch files up to "upto", the oldest "limit" of
 * them at most (0: all).  Returns true when some up to "upto" are left.
 */
bool
decoded_trim(XLogRecPtr upto, int limit)
{
	char		path[MAXPGPATH];
	int			n = 0;

	if (!own_valid)
		(void) decoded_last();
	while (n < nown && own_files[n] <= upto && (limit == 0 || n < limit))
	{
		decoded_file_name(path, own_files[n], "");
		if (unlink(path) < 0 && errno != ENOENT)
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("es projector: could not remove file \"%s\": %m", path)));
		n++;
	}
	if (n > 0)
	{
		memmove(own_files, own_files + n, sizeof(XLogRecPtr) * (nown - n));
		nown -= n;
	}
	return nown > 0 && own_files[0] <= upto;
}

static void
write_or_fail(int fd, const char *path, const void *data, size_t len)
{
	errno = 0;
	if (len > 0 && write(fd, data, len) != (ssize_t) len)
	{
		if (errno == 0)
			errno = ENOSPC;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("es projector: could not write file \"%s\": %m", path)));
	}
}

/*
 * Log the decoded transactions of the batch that are not logged yet (a
 * projector that restarted decodes again from its slot) in one file.
 * After their transactions have left the ProcArray: a worker that reads
 * the file sees their events.  Returns the WAL end of the last logged
 * commit (the new file's name), and sets *before to what it was before.
 */
XLogRecPtr
decoded_save(XLogRecPtr *before)
{
	int			n = list_length(decoded_xacts);
	XLogRecPtr *ends = palloc(sizeof(XLogRecPtr) * Max(n, 1));
	uint64	   *fxids = palloc(sizeof(uint64) * Max(n, 1));
	int32	   *counts = palloc(sizeof(int32) * Max(n, 1));
	DecodedFileHeader hdr = {DECODED_MAGIC, 0, 0};
	char		tmp[MAXPGPATH];
	char		path[MAXPGPATH];
	ListCell   *lc;
	int			fd;

	if (XLogRecPtrIsInvalid(logged_upto))
		logged_upto = decoded_last();
	*before = logged_upto;
	foreach(lc, decoded_xacts)
	{
		DecodedXact *x = lfirst(lc);

		if (x->end_lsn <= logged_upto)
			continue;
		ends[hdr.nxacts] = x->end_lsn;
		fxids[hdr.nxacts] = U64FromFullTransactionId(x->fxid);
		counts[hdr.nxacts++] = x->npositions;
		hdr.npositions += x->npositions;
	}
	if (hdr.nxacts == 0)
		return logged_upto;

	if (MakePGDirectory(DECODED_DIR) < 0 && errno != EEXIST)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("es projector: could not create directory \"%s\": %m", DECODED_DIR)));
	decoded_file_name(tmp, ends[hdr.nxacts - 1], ".new");
	decoded_file_name(path, ends[hdr.nxacts - 1], "");
	fd = OpenTransientFile(tmp, O_CREAT | O_WRONLY | O_TRUNC | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("es projector: could not create file \"%s\": %m", tmp)));
	write_or_fail(fd, tmp, &hdr, sizeof(hdr));
	write_or_fail(fd, tmp, ends, sizeof(XLogRecPtr) * hdr.nxacts);
	write_or_fail(fd, tmp, fxids, sizeof(uint64) * hdr.nxacts);
	write_or_fail(fd, tmp, counts, sizeof(int32) * hdr.nxacts);
	foreach(lc, decoded_xacts)
	{
		DecodedXact *x = lfirst(lc);

		if (x->end_lsn > logged_upto)
			write_or_fail(fd, tmp, x->positions, sizeof(int64) * x->npositions);
	}
	if (CloseTransientFile(fd) != 0 || rename(tmp, path) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("es projector: could not write file \"%s\": %m", path)));
	if (own_valid)
		own_add(ends[hdr.nxacts - 1]);
	logged_upto = ends[hdr.nxacts - 1];
	return logged_upto;
}

static void
read_or_fail(int fd, const char *path, void *data, size_t len)
{
	ssize_t		r = len > 0 ? read(fd, data, len) : 0;

	if (r < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("es projection worker: could not read file \"%s\": %m", path)));
	if (r != (ssize_t) len)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("es projection worker: file \"%s\" is too short", path)));
}

static void
not_a_batch(const char *path)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("es projection worker: file \"%s\" is not a batch of decoded transactions", path)));
}

/* The first read of a batch file: most are smaller */
#define DECODED_FIRST_READ	8192

/*
 * Append the transactions of one batch file that end after "after" to
 * decoded_xacts; returns how many events they hold (-1: the file is gone,
 * and missing_ok).  A batch of a few hundred events is one read(); a
 * bigger one, two.
 */
static int64
decoded_read_file(XLogRecPtr end, XLogRecPtr after, bool missing_ok)
{
	char		path[MAXPGPATH];
	DecodedFileHeader hdr;
	char	   *buf = palloc(DECODED_FIRST_READ);
	const char *at;
	XLogRecPtr *ends;
	uint64	   *fxids;
	int32	   *counts;
	int64	   *positions;
	int64		used = 0;
	int64		events = 0;
	size_t		size;
	ssize_t		got;
	int			fd;
	int			i;

	decoded_file_name(path, end, "");
	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0 && errno == ENOENT && missing_ok)
		return -1;
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("es projection worker: could not open file \"%s\": %m", path)));
	got = read(fd, buf, DECODED_FIRST_READ);
	if (got < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("es projection worker: could not read file \"%s\": %m", path)));
	if (got < (ssize_t) sizeof(hdr))
		not_a_batch(path);
	memcpy(&hdr, buf, sizeof(hdr));
	if (hdr.magic != DECODED_MAGIC || hdr.nxacts <= 0 || hdr.npositions < 0 ||
		hdr.nxacts > MaxAllocSize / 32 || hdr.npositions > MaxAllocSize / 16)
		not_a_batch(path);
	size = sizeof(hdr) + (sizeof(XLogRecPtr) + sizeof(uint64) + sizeof(int32)) * hdr.nxacts +
		sizeof(int64) * hdr.npositions;
	if ((size_t) got > size)
		not_a_batch(path);
	if ((size_t) got < size)
	{
		buf = repalloc(buf, size);
		read_or_fail(fd, path, buf + got, size - got);
	}
	CloseTransientFile(fd);

	/* the arrays, aligned */
	at = buf + sizeof(hdr);
	ends = palloc(sizeof(XLogRecPtr) * hdr.nxacts);
	fxids = palloc(sizeof(uint64) * hdr.nxacts);
	counts = palloc(sizeof(int32) * hdr.nxacts);
	positions = palloc(sizeof(int64) * Max(hdr.npositions, 1));
	memcpy(ends, at, sizeof(XLogRecPtr) * hdr.nxacts);
	at += sizeof(XLogRecPtr) * hdr.nxacts;
	memcpy(fxids, at, sizeof(uint64) * hdr.nxacts);
	at += sizeof(uint64) * hdr.nxacts;
	memcpy(counts, at, sizeof(int32) * hdr.nxacts);
	at += sizeof(int32) * hdr.nxacts;
	memcpy(positions, at, sizeof(int64) * hdr.npositions);
	pfree(buf);

	for (i = 0; i < hdr.nxacts; i++)
	{
		DecodedXact *x;

		if (counts[i] < 0 || counts[i] > hdr.npositions - used)
			not_a_batch(path);
		used += counts[i];
		if (ends[i] <= after)
			continue;
		x = palloc0(sizeof(DecodedXact));
		x->end_lsn = ends[i];
		x->fxid = FullTransactionIdFromU64(fxids[i]);
		x->npositions = x->maxpositions = counts[i];
		x->positions = positions + used - counts[i];
		decoded_xacts = lappend(decoded_xacts, x);
		events += x->npositions;
	}
	pfree(ends);
	pfree(fxids);
	pfree(counts);
	return events;
}

/*
 * A worker's list of the batch files that ended up to listed_upto when it
 * listed them, sorted.  A file is only added after what was logged before
 * it, and one that a live projection still needs (after its checkpoint) is
 * not removed: a unit that needs nothing past listed_upto uses the list
 * instead of reading the directory again (a backlog of 1M events is
 * thousands of files, and a few hundred units; a projection that falls
 * behind keeps thousands), and extends it with the files the projector
 * noted since (decoded_note_file), without those it removed since.
 */
static XLogRecPtr *listed = NULL;
static int	nlisted = 0;
static XLogRecPtr listed_upto = InvalidXLogRecPtr;

/* The i-th oldest of the files noted (decoded_note_file); under the mutex */
#define RECENT(i) (my_db->recent[(my_db->recent_first + (i)) % LOGGED_RECENT])

/*
 * The projector: note a batch file it logged, ending at "end", after the
 * one ending at "before", for the workers; under the mutex.  The last
 * LOGGED_RECENT of them are kept: with those, a worker that listed the
 * directory up to a point can extend its list without reading the
 * directory again, as long as no file after that point was dropped from
 * them (recent_from says): a worker back from a slow projection's unit is
 * a second behind, and listing a directory where a projection far behind
 * keeps thousands of files takes longer than a fast projection's unit.
 */
void
decoded_note_file(XLogRecPtr before, XLogRecPtr end)
{
	XLogRecPtr	last = my_db->nrecent > 0 ? RECENT(my_db->nrecent - 1) : my_db->recent_from;

	/* not right after the last one noted (a projector that started again): start over */
	if (my_db->nrecent == 0 || last != before)
	{
		my_db->nrecent = my_db->recent_first = 0;
		my_db->recent_from = before;
	}
	if (my_db->nrecent == LOGGED_RECENT)
	{
		my_db->recent_from = RECENT(0);
		my_db->recent_first = (my_db->recent_first + 1) % LOGGED_RECENT;
		my_db->nrecent--;
	}
	RECENT(my_db->nrecent) = end;
	my_db->nrecent++;
}

/*
 * A worker: extend the list up to "upto" with the files the projector
 * noted, if they are all the files logged after listed_upto; first drop
 * the files it removed (no live projection needs them).
 */
static void
decoded_list_recent(XLogRecPtr upto)
{
	static XLogRecPtr *recent = NULL;
	XLogRecPtr	trimmed;
	bool		extend;
	int			lo = 0;
	int			hi;
	int			n = 0;
	int			i;

	if (recent == NULL)
		recent = MemoryContextAlloc(TopMemoryContext, sizeof(XLogRecPtr) * LOGGED_RECENT);
	SpinLockAcquire(&projector->mutex);
	trimmed = my_db->trimmed_upto;
	hi = my_db->nrecent;
	extend = hi > 0 && my_db->recent_from <= listed_upto;
	/* copy only those after listed_upto, up to "upto" */
	while (extend && lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (RECENT(mid) <= listed_upto)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; extend && lo < my_db->nrecent && RECENT(lo) <= upto; lo++)
		recent[n++] = RECENT(lo);
	SpinLockRelease(&projector->mutex);
	if (!extend)
		return;
	for (i = 0; i < nlisted && listed[i] <= trimmed; i++)
		;
	if (i > 0)
	{
		memmove(listed, listed + i, sizeof(XLogRecPtr) * (nlisted - i));
		nlisted -= i;
	}
	listed = repalloc(listed, sizeof(XLogRecPtr) * Max(nlisted + n, 1));
	memcpy(listed + nlisted, recent, sizeof(XLogRecPtr) * n);
	nlisted += n;
	listed_upto = upto;
}

static void
decoded_list(XLogRecPtr upto)
{
	List	   *ends = decoded_files(InvalidXLogRecPtr, upto);
	ListCell   *lc;

	if (listed != NULL)
		pfree(listed);
	listed = MemoryContextAlloc(TopMemoryContext,
								sizeof(XLogRecPtr) * Max(list_length(ends), 1));
	nlisted = 0;
	foreach(lc, ends)
		listed[nlisted++] = *(XLogRecPtr *) lfirst(lc);
	listed_upto = upto;
	list_free_deep(ends);
}

/*
 * Load the listed transactions after "after" up to "upto", until they hold
 * "want" events; sets *reached to how far that went.  Returns false when
 * a listed file is gone (only when missing_ok).
 */
static bool
decoded_load_listed(XLogRecPtr after, XLogRecPtr upto, int64 want,
					bool missing_ok, XLogRecPtr *reached)
{
	int			lo = 0;
	int			hi = nlisted;
	int64		events = 0;

	/* the first file that ends after "after" */
	while (lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (listed[mid] <= after)
			lo = mid + 1;
		else
			hi = mid;
	}
	decoded_xacts = NIL;
	*reached = upto;
	for (; lo < nlisted && listed[lo] <= upto; lo++)
	{
		int64		n = decoded_read_file(listed[lo], after, missing_ok);

		if (n < 0)
			return false;
		events += n;
		if (events >= want && lo + 1 < nlisted && listed[lo + 1] <= upto)
		{
			*reached = listed[lo];
			break;
		}
	}
	return true;
}

/*
 * A projection worker: load, as decoded_xacts, the logged transactions that
 * end after "after", up to "upto", in commit order, in the current memory
 * context: the batches they are in, until they hold "want" events.
 * Returns how far that goes: "upto", or the end of the last batch read
 * when there is more.
 */
XLogRecPtr
decoded_load(XLogRecPtr after, XLogRecPtr upto, int64 want)
{
	XLogRecPtr	reached;

	/*
	 * The list, extended to "upto" if it can be.  A projection behind what
	 * it lists (a slow one) takes its unit from it, up to listed_upto:
	 * listing again would read the thousands of names it keeps.  Else, or
	 * if a listed file is gone, the directory.
	 */
	if (listed != NULL && upto > listed_upto)
		decoded_list_recent(upto);
	if (listed != NULL && after < listed_upto &&
		decoded_load_listed(after, Min(upto, listed_upto), want, true, &reached))
		return reached;
	decoded_list(upto);
	(void) decoded_load_listed(after, upto, want, false, &reached);
	return reached;
}

/*
 * The projector starts in a fresh server (shared memory initialized): the
 * files of its database, if any, are from before; remove them.
 */
void
decoded_remove_all(void)
{
	own_valid = false;
	(void) decoded_trim(PG_UINT64_MAX, 0);
	logged_upto = InvalidXLogRecPtr;
	own_valid = false;
}
