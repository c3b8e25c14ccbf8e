/*-------------------------------------------------------------------------
 *
 * lifecycle.c
 *	  The stream lifecycle: soft delete, tombstone, retention (max_count,
 *	  max_age, truncate_before) and scavenge.
 *
 * A stream's lifecycle state is a row of es.stream_metadata; most streams
 * have none.  Each backend keeps one flag, "does any stream have a row",
 * refreshed through a relcache invalidation that a statement trigger on the
 * table sends, so appends and reads of a store that uses no lifecycle
 * feature pay nothing.  Lookups of one stream's row are direct index scans:
 * the append functions need no privilege on the table.
 *
 * Events hidden by a delete or by retention are skipped by every read at
 * once; es.scavenge removes them physically, the only path besides DROP
 * EXTENSION that deletes from es.events.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/sinval.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "es.h"

/* Attribute numbers of es.stream_metadata */
#define Anum_meta_stream_id			1
#define Anum_meta_deleted_before	2
#define Anum_meta_tombstoned_at		3
#define Anum_meta_max_count			4
#define Anum_meta_max_age			5
#define Anum_meta_truncate_before	6
#define Anum_meta_scavenged_to		7

/* The backend's flag: is any stream's lifecycle state recorded? */
static bool lifecycle_valid = false;
static bool lifecycle_used = false;
static Oid	lifecycle_relid = InvalidOid;

/* True during es.scavenge: the guard trigger lets its deletes through */
bool		lifecycle_scavenging = false;

/* es.stream_metadata changed (or everything was flushed) */
void
lifecycle_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == lifecycle_relid)
		lifecycle_valid = false;
}

/* At the end of a transaction no scavenge runs any more */
void
lifecycle_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
		lifecycle_scavenging = false;
}

/*
 * True when some stream has a lifecycle row.  Takes invalidations first,
 * so a delete committed by another session counts at once.
 */
bool
lifecycle_in_use(void)
{
	AcceptInvalidationMessages();
	if (!lifecycle_valid)
	{
		Relation	rel;
		TableScanDesc scan;
		TupleTableSlot *slot;
		Snapshot	snap;

		/* valid first: an invalidation while we look marks it stale again */
		lifecycle_valid = true;
		lifecycle_relid = es_relation_oid(ES_STREAM_METADATA);
		rel = table_open(lifecycle_relid, AccessShareLock);
		snap = RegisterSnapshot(GetLatestSnapshot());
		slot = table_slot_create(rel, NULL);
		scan = table_beginscan(rel, snap, 0, NULL);
		lifecycle_used = table_scan_getnextslot(scan, ForwardScanDirection, slot);
		table_endscan(scan);
		ExecDropSingleTupleTableSlot(slot);
		UnregisterSnapshot(snap);
		table_close(rel, AccessShareLock);
	}
	return lifecycle_used;
}

/* Read the lifecycle row of a stream (latest snapshot); m->found says if any */
void
lifecycle_get(text *stream_id, StreamMeta *m)
{
	Relation	rel;
	Relation	index;
	IndexScanDesc scan;
	ScanKeyData key;
	TupleTableSlot *slot;
	Snapshot	snap;

	memset(m, 0, sizeof(*m));
	rel = table_open(es_relation_oid(ES_STREAM_METADATA), AccessShareLock);
	index = index_open(es_relation_oid(ES_STREAM_METADATA_PKEY), AccessShareLock);
	snap = RegisterSnapshot(GetLatestSnapshot());
	slot = table_slot_create(rel, NULL);

	ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_TEXTEQ,
						   PointerGetDatum(stream_id));
	scan = index_beginscan_compat(rel, index, snap, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	if (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		d;

		m->found = true;
		m->deleted_before = DatumGetInt64(slot_getattr(slot, Anum_meta_deleted_before, &isnull));
		(void) slot_getattr(slot, Anum_meta_tombstoned_at, &isnull);
		m->tombstoned = !isnull;
		d = slot_getattr(slot, Anum_meta_max_count, &isnull);
		m->max_count = isnull ? 0 : DatumGetInt64(d);
		d = slot_getattr(slot, Anum_meta_max_age, &isnull);
		m->has_max_age = !isnull;
		if (!isnull)
			m->max_age = *DatumGetIntervalP(d);
		d = slot_getattr(slot, Anum_meta_truncate_before, &isnull);
		m->truncate_before = isnull ? 0 : DatumGetInt64(d);
		m->scavenged_to = DatumGetInt64(slot_getattr(slot, Anum_meta_scavenged_to, &isnull));
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snap);
	index_close(index, AccessShareLock);
	table_close(rel, AccessShareLock);
}

/* Raise ES003 for a tombstoned stream */
void
lifecycle_tombstoned(text *stream_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_ES_STREAM_DELETED),
			 errmsg("stream \"%s\" is deleted", text_to_cstring(stream_id)),
			 errdetail("The stream was hard deleted (tombstoned): it cannot be read or appended to again.")));
}

/*
 * The visible part of a stream whose last version is "last": versions from
 * the returned one on, recorded at or after *min_recorded (when
 * *has_min_recorded).
 */
int64
lifecycle_first_visible(StreamMeta *m, int64 last, bool *has_min_recorded,
						TimestampTz *min_recorded)
{
	int64		first = m->deleted_before + 1;

	if (m->truncate_before > first)
		first = m->truncate_before;
	if (m->max_count > 0 && last - m->max_count + 1 > first)
		first = last - m->max_count + 1;
	*has_min_recorded = m->has_max_age;
	if (m->has_max_age)
		*min_recorded = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
																TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
																IntervalPGetDatum(&m->max_age)));
	return first;
}

/* Run one query (as the caller) and fail on an SPI error */
static void
lifecycle_spi(const char *sql, int nargs, Oid *types, Datum *values)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, NULL, false, 0);

	if (rc < 0)
		elog(ERROR, "es: query failed: %s", SPI_result_code_string(rc));
}

/*
 * Remove up to "budget" hidden events of one stream, the oldest first, and
 * move its scavenged_to; returns how many (0: none hidden), and sets
 * *up_to to the last version removed.  In es_scavenge's loop.
 */
static int64
scavenge_stream(Datum stream_id, int64 budget, int64 *up_to)
{
	Oid			types[2] = {TEXTOID, INT8OID};
	Datum		values[2] = {stream_id, Int64GetDatum(budget)};
	bool		isnull;
	int64		removed;

	/*
	 * Does the stream hide anything?  Only a hint, under no lock: what a
	 * retention change commits meanwhile is for the next scavenge (a
	 * tightening) or decided again below (a relaxation).
	 */
	lifecycle_spi("SELECT 1 FROM ONLY es.events x JOIN ONLY es.stream_metadata m"
				  "    ON m.stream_id OPERATOR(pg_catalog.=) x.stream_id"
				  " WHERE x.stream_id OPERATOR(pg_catalog.=) $1"
				  "   AND es.event_hidden(m, x.stream_version, x.recorded_at)"
				  " LIMIT 1", 1, types, values);
	if (SPI_processed == 0)
		return 0;

	/*
	 * Lock the stream's lifecycle row before deciding what is hidden.
	 * es.set_stream_metadata, es.delete_stream and es.tombstone_stream
	 * update that row, so an open retention change makes us wait for its
	 * end, and one that comes later waits for ours (we update the row below
	 * anyway: no weaker lock first, which two scavenges would deadlock
	 * upgrading).  Under READ COMMITTED the DELETE below takes a new
	 * snapshot, after the lock: it sees the setting as committed, and
	 * nothing can change it before our commit.  Under REPEATABLE READ or
	 * SERIALIZABLE, a change committed after our snapshot makes the lock
	 * fail (40001) instead of letting an old snapshot decide.  The stream's
	 * append lock is not taken: appends go on during a scavenge.
	 */
	lifecycle_spi("SELECT 1 FROM ONLY es.stream_metadata m"
				  " WHERE m.stream_id OPERATOR(pg_catalog.=) $1"
				  "   FOR NO KEY UPDATE OF m", 1, types, values);
	if (SPI_processed == 0)
		return 0;
	lifecycle_spi("WITH gone AS ("
				  "  DELETE FROM ONLY es.events e"
				  "   WHERE e.ctid OPERATOR(pg_catalog.=) ANY (ARRAY("
				  "    SELECT x.ctid FROM ONLY es.events x JOIN ONLY es.stream_metadata m"
				  "        ON m.stream_id OPERATOR(pg_catalog.=) x.stream_id"
				  "     WHERE x.stream_id OPERATOR(pg_catalog.=) $1"
				  "       AND es.event_hidden(m, x.stream_version, x.recorded_at)"
				  "     ORDER BY x.stream_version LIMIT $2))"
				  "  RETURNING e.stream_version) "
				  "SELECT pg_catalog.count(*), pg_catalog.max(g.stream_version) FROM gone g",
				  2, types, values);
	removed = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (removed == 0)
		return 0;
	*up_to = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	values[1] = Int64GetDatum(*up_to);
	lifecycle_spi("UPDATE ONLY es.stream_metadata m"
				  " SET scavenged_to = GREATEST(m.scavenged_to, $2),"
				  " updated_at = pg_catalog.now()"
				  " WHERE m.stream_id OPERATOR(pg_catalog.=) $1", 2, types, values);
	return removed;
}

PG_FUNCTION_INFO_V1(es_scavenge);

/*
 * es.scavenge(max_events): remove up to max_events events hidden by deletes,
 * tombstones and retention, and report per stream what was removed.  Only
 * rows of hidden events are touched: appends go on meanwhile, to every
 * stream.  Positions and versions are never reused: a stream's scavenged_to
 * keeps its numbering.
 */
Datum
es_scavenge(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	volatile int64 budget = PG_ARGISNULL(0) ? 10000 : PG_GETARG_INT64(0);
	uint64		s;
	SPITupleTable *streams;
	EsUserCode	uc;
	int			guc_level;

	if (budget < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_events must be at least 1, not " INT64_FORMAT, budget)));
	PreventCommandIfReadOnly("es.scavenge");
	InitMaterializedSRF(fcinfo, 0);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "es: SPI_connect failed");
	guc_level = es_internal_begin();
	lifecycle_spi("SELECT m.stream_id FROM ONLY es.stream_metadata m ORDER BY m.stream_id",
				  0, NULL, NULL);
	streams = SPI_tuptable;

	/*
	 * EXECUTE on es.scavenge is the right to scavenge: the deletes run as the
	 * owner of es.events (the abort of an error restores the user).  The
	 * guard lets our deletes pass, and only while this loop runs.
	 */
	es_as_owner_begin(&uc, es_relation_oid(ES_EVENTS));
	lifecycle_scavenging = true;
	PG_TRY();
	{
		for (s = 0; s < streams->numvals && budget > 0; s++)
		{
			bool		isnull;
			Datum		stream_id = SPI_getbinval(streams->vals[s], streams->tupdesc, 1, &isnull);
			int64		up_to = 0;
			int64		removed;
			Datum		out[3];
			bool		outnull[3] = {false, false, false};

			CHECK_FOR_INTERRUPTS();
			removed = scavenge_stream(stream_id, budget, &up_to);
			if (removed == 0)
				continue;
			budget -= removed;
			out[0] = PointerGetDatum(DatumGetTextPCopy(stream_id));
			out[1] = Int64GetDatum(removed);
			out[2] = Int64GetDatum(up_to);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, outnull);
		}
	}
	PG_FINALLY();
	{
		lifecycle_scavenging = false;
	}
	PG_END_TRY();
	es_usercode_end(&uc);
	SPI_finish();
	es_internal_end(guc_level);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(es_lock_stream);

/* es.lock_stream(stream_id): the append lock of a stream, until xact end */
Datum
es_lock_stream(PG_FUNCTION_ARGS)
{
	es_lock_stream_id(read_stream_id_arg(fcinfo, 0));
	PG_RETURN_VOID();
}
