/*-------------------------------------------------------------------------
 *
 * es.h
 *	  Shared declarations of the es event store extension.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ES_H
#define ES_H

#include "fmgr.h"
#include "access/htup.h"
#include "access/tupdesc.h"
#include "nodes/pg_list.h"
#include "datatype/timestamp.h"
#include "utils/snapshot.h"
#include "access/xact.h"
#include "tcop/utility.h"

#include "compat.h"

/* SQLSTATEs of our own, documented in doc/reference.md */
#define ERRCODE_ES_WRONG_EXPECTED_VERSION	MAKE_SQLSTATE('E','S','0','0','1')
#define ERRCODE_ES_IDEMPOTENCY_MISMATCH		MAKE_SQLSTATE('E','S','0','0','2')
#define ERRCODE_ES_STREAM_DELETED			MAKE_SQLSTATE('E','S','0','0','3')

/* GUCs (es.c) */
extern bool es_notify;
extern int	es_max_projector_databases;

/* es.c: the extension's relations, looked up once per backend */
typedef enum EsRelation
{
	ES_EVENTS,					/* es.events */
	ES_EVENTS_PKEY,				/* its primary key (stream_id, stream_version) */
	ES_EVENTS_EVENT_ID,			/* its unique index (stream_id, event_id) */
	ES_POSITION_SEQ,			/* es.events_global_position_seq */
	ES_UPCASTER_STEPS,			/* es.upcaster_steps */
	ES_STREAM_METADATA,			/* es.stream_metadata */
	ES_STREAM_METADATA_PKEY,	/* its primary key (stream_id) */
	ES_SNAPSHOTS,				/* es.snapshots */
	ES_EVENTS_POSITION,			/* es.events' index on global_position */
	ES_PROJECTIONS,				/* es.projections */
	ES_NRELATIONS
} EsRelation;

extern Oid	es_relation_oid(EsRelation which);
extern Oid	es_event_type_oid(void);
extern Oid	es_rel_owner(Oid relid);
extern void es_lock_stream_id(text *stream_id);

/*
 * es.c: who runs what, with which name resolution.
 *
 * Statements es runs itself are schema-qualified and run between
 * es_internal_begin and es_internal_end, under search_path = pg_catalog,
 * pg_temp whoever calls.  User code (handlers, upcasters, reducers) runs
 * between es_usercode_begin and es_usercode_end: as "userid", under
 * SECURITY_RESTRICTED_OPERATION, with the same pinned search_path, and
 * every setting it changes is rolled back when it returns.  An error
 * inside either is cleaned up by the (sub)transaction's abort.
 */
#define ES_SEARCH_PATH	"pg_catalog, pg_temp"

typedef struct EsUserCode
{
	Oid			save_userid;
	int			save_sec;
	int			guc_level;
} EsUserCode;

/* A batch of user-code calls that change no setting (es_usercode_batch_begin) */
typedef struct EsUserCodeBatch
{
	int			guc_level;		/* 0 until the first call */
} EsUserCodeBatch;

/* es.c: es's row types, whose shape the C code relies on */
typedef enum EsRowType
{
	ES_ROW_EVENT,				/* es.event */
	ES_ROW_NEW_EVENT			/* es.new_event */
} EsRowType;

extern void es_check_row_type(TupleDesc desc, EsRowType which);

extern int	es_internal_begin(void);
extern void es_internal_end(int level);
extern int	es_usercode_run_begin(const char *search_path);
extern void es_usercode_begin(EsUserCode *uc, Oid userid);
extern void es_usercode_begin_path(EsUserCode *uc, Oid userid,
								   const char *search_path);
extern char *es_capture_search_path(void);
extern void es_usercode_end(EsUserCode *uc);
extern void es_as_owner_begin(EsUserCode *uc, Oid relid);
extern void es_usercode_batch_begin(EsUserCodeBatch *batch);
extern void es_usercode_begin_batched(EsUserCodeBatch *batch, EsUserCode *uc,
									  Oid userid, const char *search_path);
extern void es_usercode_end_batched(EsUserCode *uc);
extern void es_usercode_batch_end(EsUserCodeBatch *batch);

/* Attribute numbers of es.events */
#define Anum_events_global_position	1
#define Anum_events_stream_id		2
#define Anum_events_stream_version	3
#define Anum_events_event_id		4
#define Anum_events_event_type		5
#define Anum_events_schema_version	6
#define Anum_events_data			7
#define Anum_events_metadata		8
#define Anum_events_recorded_at		9
#define Anum_events_xid				10
#define Natts_events				10

/* Attribute numbers of the es.event row type (what the reads return) */
#define READ_ATT_GLOBAL_POSITION	1
#define READ_ATT_STREAM_ID			2
#define READ_ATT_STREAM_VERSION		3
#define READ_ATT_EVENT_ID			4
#define READ_ATT_EVENT_TYPE			5
#define READ_ATT_SCHEMA_VERSION		6
#define READ_ATT_DATA				7
#define READ_ATT_METADATA			8
#define READ_ATT_RECORDED_AT		9
#define READ_NATTS					9

/* horizon.c: gap-safe read horizon kept in shared memory */
extern void HorizonShmemRequest(void);
extern void HorizonShmemStartup(void);
extern void horizon_xact_callback(XactEvent event, void *arg);
extern bool horizon_enabled(void);
extern void horizon_begin_allocation(void);
extern void horizon_end_allocation(int64 first_position);
extern Snapshot horizon_snapshot(int64 *horizon);

/* lifecycle.c: deletes, tombstones, retention */
typedef struct StreamMeta
{
	bool		found;			/* the stream has a lifecycle row */
	int64		deleted_before; /* versions up to this one are soft deleted */
	bool		tombstoned;
	int64		max_count;		/* 0: none */
	bool		has_max_age;
	Interval	max_age;
	int64		truncate_before;	/* 0: none */
	int64		scavenged_to;	/* the highest version scavenged */
} StreamMeta;

extern bool lifecycle_scavenging;
extern void lifecycle_relcache_callback(Datum arg, Oid relid);
extern void lifecycle_xact_callback(XactEvent event, void *arg);
extern bool lifecycle_in_use(void);
extern void lifecycle_get(text *stream_id, StreamMeta *m);
pg_noreturn extern void lifecycle_tombstoned(text *stream_id);
extern int64 lifecycle_first_visible(StreamMeta *m, int64 last,
									 bool *has_min_recorded,
									 TimestampTz *min_recorded);

/* read.c */
typedef void (*ReadEachFn) (HeapTuple tuple, TupleDesc desc, void *arg);
extern text *read_stream_id_arg(FunctionCallInfo fcinfo, int argno);
extern void read_stream_each(text *stream_id, int64 from_version,
							 ReadEachFn fn, void *arg);

/* upcast.c: evolve events to their newest schema on every read */
extern void upcast_relcache_callback(Datum arg, Oid relid);
extern void upcast_proc_callback(Datum arg, int cacheid, uint32 hashvalue);
extern void upcast_xact_callback(XactEvent event, void *arg);
extern void upcast_begin(void);
extern void upcast_end(void);
extern bool upcast_any(void);
extern HeapTuple upcast_tuple(HeapTuple tuple, TupleDesc desc);
extern bool upcast_values(Datum *values, bool *nulls);
extern bool upcast_values_batched(Datum *values, bool *nulls,
								  EsUserCodeBatch *batch);
extern List *upcast_source_types(List *wanted);

/* handler.c: projections' handlers (inline trigger, replays, the projector's calls) */
typedef struct Projection
{
	char	   *name;
	Oid			handler;
	Oid			owner;			/* the handler's owner: handlers run as it */
	char	   *search_path;	/* ... with this search_path (NULL: pinned) */
	int			statement_timeout;	/* ms per event, 0: none (projector only) */
	int			lock_timeout;	/* ms, 0: none (projector only) */
	bool		batch;			/* handler(events es.event[]): async only */
	char	   *acc;			/* a batch handler's es.event[], until flushed */
	Size		acc_len;		/* its bytes so far (its header included) */
	Size		acc_size;		/* allocated */
	int			acc_n;			/* its events */
	MemoryContext acc_cxt;
	int64		acc_first;
	int64		acc_last;
	FmgrInfo	flinfo;
	List	   *types;			/* event_types (C strings), NIL: all */
	bool		paused;
} Projection;

extern bool projection_inline_firing;
extern int64 projection_current_position;
extern void project_relcache_callback(Datum arg, Oid relid);
extern void project_proc_callback(Datum arg, int cacheid, uint32 hashvalue);
extern TupleDesc projection_event_desc(void);
extern List *projection_load(const char *mode, const char *name, MemoryContext cxt);
extern HeapTuple projection_event_from_row(HeapTuple row, TupleDesc rowdesc);
extern bool projection_apply(Projection *p, HeapTuple event);
extern void projection_flush(Projection *p);
extern void projection_flush_discard(Projection *p);
extern int64 projection_replay(Projection *p, int64 from, int64 before,
							   int64 limit, Snapshot snap, int64 *count,
							   TimestampTz deadline, bool *timed_out);
extern Projection *projection_get(text *name);
extern bool projection_inline_active(void);
extern TupleDesc projection_event_desc_get(bool recheck);
extern Projection *projection_from_row(HeapTuple tup, TupleDesc desc,
									   MemoryContext cxt);
extern void projection_truncate_as_owner(Oid relid, const char *projection);
extern int	handlers_begin(Projection *p);
extern void handlers_end(int level);

/* fold.c: es.fold */
extern void fold_proc_callback(Datum arg, int cacheid, uint32 hashvalue);
extern void fold_xact_callback(XactEvent event, void *arg);

/* projector/launcher.c: the async projector as backends see it (projector/projector.h) */
extern void ProjectorShmemRequest(void);
extern void ProjectorShmemStartup(void);
extern void launcher_register(void);
extern void projector_xact_callback(XactEvent event, void *arg);
extern void projector_process_utility(PlannedStmt *pstmt, const char *queryString,
									  bool readOnlyTree, ProcessUtilityContext context,
									  ParamListInfo params, QueryEnvironment *queryEnv,
									  DestReceiver *dest, QueryCompletion *qc);
extern PGDLLIMPORT ProcessUtility_hook_type prev_process_utility;
extern void projector_note_append(void);
extern void pick_proc_callback(Datum arg, int cacheid, uint32 hashvalue);
extern int	es_max_projection_workers;

#define MAX_PROJECTION_WORKERS 32	/* es.max_projection_workers at most */

#endif							/* ES_H */
