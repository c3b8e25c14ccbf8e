/*-------------------------------------------------------------------------
 *
 * projector.h
 *	  The types and functions the files of the asynchronous projector share.
 *
 * How it works.  A launcher (launcher.c, a static background worker, so
 * only shared_preload_libraries = 'es' is needed) starts one projector per
 * database (worker.c).  The projector owns the logical slot
 * es_projector_<oid> (slot.c), decodes es.events inserts through
 * PostgreSQL's own pgoutput, the publication es_events, and logs each
 * decoded batch of committed transactions, in commit order, for its
 * projection workers (decode.c); it runs no handler.  Its workers
 * (applier.c, es.max_projection_workers of them) each take, in turn, a
 * projection that has work and that no other worker holds (its row,
 * locked SKIP LOCKED), and apply one unit of it (apply.c) in a
 * transaction that also advances its checkpoint, applied_lsn
 * (state.c).  The projector confirms its slot, and removes logged
 * batches, only up to the oldest live checkpoint, so after a crash (which
 * empties the log) decoding again from the slot gives back exactly what
 * was not applied.  A slow or stuck handler holds one worker and its own
 * projection; the other workers go on with the others, and the projector
 * starts one more beside each held worker (applier.c).
 *
 * A projection that joins late (created, rebuilt) first reads the table in
 * position order below the gap-safe horizon, caught_up_to being exact
 * (catchup.c), then switches to the decoded stream: with L0 what the
 * projector has logged (announced until the switch commits, see
 * switch_begin) it takes a snapshot S, applies what S shows above
 * caught_up_to, and stores S and applied_lsn = L0.  A decoded transaction
 * after L0 is applied only if S does not show it; once the decoding passes
 * the WAL insert position read just after S was taken, S is forgotten.
 * The projector logs a transaction only once it has left the ProcArray,
 * so every transaction that ends at or before L0 is in S.
 *
 * The projector and its workers connect as the bootstrap superuser: they
 * pin who they are and their settings whatever the database's settings
 * say, and name every object their statements use with its schema; the
 * projector uses the publication and the slot only once verified to be
 * es's own and keeps the decoded rows of es.events only; both run
 * user code (handlers, upcasters, the truncation of a projection's
 * tables) as the code's or the table's owner, never as themselves.
 *
 * A paused or failed projection keeps its checkpoint, which holds the
 * slot (and WAL) and the log back; the projector says so in the log.  When
 * it becomes active again, a worker applies what was logged after it.
 *
 * A projection's state (its phase, paused, failed, its checkpoints: its
 * row in es.projections) changes only through the transitions of state.c,
 * whether an admin function, a worker or the projector makes the change;
 * its top comment draws the state machine.
 *
 * Backends only touch the shared state (launcher.c): their commits wake
 * the projector, which wakes its workers, and es.wait_for_projection's
 * waiters.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ES_PROJECTOR_H
#define ES_PROJECTOR_H

#include "access/xlogdefs.h"
#include "executor/spi.h"
#include "nodes/pg_list.h"
#include "postmaster/bgworker.h"
#include "replication/logical.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/spin.h"
#include "utils/snapshot.h"
#include "utils/timestamp.h"

#include "es.h"

#define DECODE_MAX_XACTS	1000	/* decoded transactions per batch */
#define DECODE_MAX_EVENTS	20000	/* decoded events per batch */
#define LOGGED_RECENT		2048	/* batch files a worker finds without listing the directory */
#define UNIT_TIME_MS		1000	/* a worker's unit ends after a transaction once it ran this long */
#define HELD_AFTER_MS		100		/* a worker in one unit this long is held: another starts beside it */
#define HELD_KEEP_MS		10000	/* the workers started beside held ones stay this long after */
#define CATCHUP_BATCH		5000	/* events per catch-up transaction, and about per live unit */
#define RAISE_EVERY_BYTES	(16 * 1024 * 1024)	/* idle checkpoint raise */
#define TRIM_PER_BATCH		8		/* applied batch files removed after a batch (more when idle) */
#define LOOK_EVERY_MS		50		/* the projector reads es.projections at most this often while busy */
#define VACUUM_EVERY_MS		2000	/* the projector vacuums es.projections at most this often */
#define HOLD_LOG_INTERVAL_MS (5 * 60 * 1000)	/* repeat "holds WAL" */

/* A projection worker of a database, in shared memory */
typedef struct ProjectionWorkerSlot
{
	pid_t		pid;			/* 0: none */
	Latch	   *latch;
	TimestampTz restart_at;		/* after an error exit: not before */
	XLogRecPtr	switching_at;	/* L0 of a switch to live in flight */
	TimestampTz unit_start;		/* in a unit since, 0: between units */
} ProjectionWorkerSlot;

/* Shared state: one entry per database that has (had) a projector */
typedef struct ProjectorDb
{
	Oid			dboid;			/* InvalidOid: free entry */
	pid_t		pid;			/* the running projector, 0: none */
	Latch	   *latch;
	bool		start_requested;	/* for the launcher */
	bool		dropping;		/* DROP DATABASE: do not restart */
	TimestampTz restart_at;		/* after an error exit: not before */
	XLogRecPtr	last_append_end;	/* WAL end of the latest append's commit */
	XLogRecPtr	decoded_upto;	/* decoded, and logged for the workers */
	XLogRecPtr	logged_upto;	/* the WAL end of the last logged commit */
	bool		log_ready;		/* the projector cleared the old files */
	/* the last batch files logged, for the workers (decoded_load) */
	XLogRecPtr	trimmed_upto;	/* no worker needs the files up to it */
	XLogRecPtr	recent_from;	/* every file that ends after it is in recent */
	int			recent_first;	/* the oldest in recent (a ring) */
	int			nrecent;
	XLogRecPtr	recent[LOGGED_RECENT];	/* their WAL ends */
	int			active;			/* active async projections (the projector's look) */
	int			workers_wanted;	/* workers to run (projection_workers_start) */
	ProjectionWorkerSlot workers[MAX_PROJECTION_WORKERS];
} ProjectorDb;

typedef struct ProjectorShared
{
	slock_t		mutex;
	Latch	   *launcher_latch;
	TimestampTz full_warned_at;	/* the last "no free entry" warning */
	/* es.wait_for_projection: what it waits on (projector_progress) */
	pg_atomic_uint64 progress;	/* bumped after each commit that matters */
	pg_atomic_uint32 waiters;	/* backends asleep on progress_cv */
	/* bumped before a change of an async projection's state commits */
	pg_atomic_uint32 registry_gen;
	ConditionVariable progress_cv;
	ProjectorDb dbs[FLEXIBLE_ARRAY_MEMBER];	/* es.max_projector_databases */
} ProjectorShared;

/* A committed transaction as decoded: the positions of its events */
typedef struct DecodedXact
{
	FullTransactionId fxid;
	XLogRecPtr	end_lsn;
	int			npositions;
	int			maxpositions;
	int64	   *positions;
} DecodedXact;

/* An async projection as one batch sees it */
typedef struct AsyncProjection
{
	Projection *p;
	bool		park;			/* on_error = 'park' */
	bool		failed;
	char	   *phase;
	int64		caught_up_to;
	int64		last_position;
	XLogRecPtr	applied_lsn;	/* Invalid: not live yet */
	Datum		live_snapshot;	/* pg_snapshot, 0: none */
	XLogRecPtr	live_snapshot_lsn;
	/* results of the batch */
	bool		changed;
	XLogRecPtr	new_applied_lsn;
	bool		stopped;		/* failed in this batch */
	int64		error_position;
	char	   *error_message;
} AsyncProjection;

/*
 * Run one unit of work in a subtransaction.  On error, returns false with
 * the error's SQLSTATE and message; the unit's writes are rolled back.
 */
typedef struct ApplyUnit
{
	Projection *p;
	int64	   *positions;		/* apply these, or ... */
	int			n;
	int64		from;			/* ... the range (from, before), limit */
	int64		before;
	int			limit;
	Snapshot	snap;
	/* a worker's unit ends, at a transaction's end, once this has passed */
	TimestampTz deadline;		/* 0: none */
	int		   *bounds;			/* positions: where each transaction ends */
	int			nbounds;
	bool		timed_out;		/* out: it ended at the deadline, after ... */
	int			done;			/* ... positions: this many */
	int64		last;			/* range: the last position read */
	int64		count;			/* range: how many were read */
	/* the error, when it failed */
	char	   *sqlstate;
	char	   *message;
	char	   *context;
} ApplyUnit;

/* A projection's row as an admin transition finds it, locked (state.c) */
typedef struct StateRow
{
	char	   *name;
	bool		async;			/* mode = 'async' */
	bool		paused;
	bool		paused_at_null;
	int64		paused_at_position; /* inline, paused: what it had applied */
	List	   *tables;			/* OIDs of its tables */
} StateRow;

/* Run a statement through SPI with a plan kept for the worker's life */
typedef struct KeptPlan
{
	const char *sql;
	SPIPlanPtr	plan;
	int			cursor_options; /* CURSOR_OPT_GENERIC_PLAN: never plan again per call */
} KeptPlan;

typedef enum BatchResult
{
	BATCH_DONE,
	BATCH_NOTHING				/* no async projection left */
} BatchResult;

typedef enum AttachResult
{
	ATTACH_OK,
	ATTACH_NOTHING,				/* no async projection here: detach */
	ATTACH_WAIT					/* the publication or the slot is not ours */
} AttachResult;

/* The background workers' entry points */
PGDLLEXPORT void es_launcher_main(Datum arg);
PGDLLEXPORT void es_projector_main(Datum arg);
PGDLLEXPORT void es_projection_worker_main(Datum arg);

/* launcher.c: the shared state, and what backends do with it */
extern ProjectorShared *projector;
extern ProjectorDb *projector_db(Oid dboid, bool create, XLogRecPtr init_lsn);
extern void projector_full_warning(Oid dboid);
extern Latch *request_start(ProjectorDb *db, TimestampTz not_before);
extern void projector_progress(void);
extern void projector_bgworker_init(BackgroundWorker *worker, const char *function,
									const char *type);

/* worker.c: the projector's process */
extern ProjectorDb *my_db;
extern char *my_db_name;
extern char slot_name[NAMEDATALEN];
extern int	projector_xact_begin(const char *activity);
extern void projector_xact_end(int guc_level);
extern void projector_pin_settings(bool at_start, const char *application_name);
extern bool projector_user_begin(const char *search_path);
extern void projector_user_end(bool ended);
extern void stats_flush_idle(void);
extern void projector_wake_workers(void);

/* applier.c: a projection worker's process */
extern void projection_workers_start(BackgroundWorkerHandle **handles);
extern XLogRecPtr switch_begin(void);
extern void switch_end(void);

/* decode.c */
extern LogicalDecodingContext *decoding;
extern List *decoded_xacts;
extern XLogRecPtr processed_upto;
extern Oid	events_relid;
extern bool foreign_relation_logged;
extern void decoding_init(void);
extern void decoding_start(void);
extern void decoding_stop(void);
extern void decoding_reset(void);
extern XLogRecPtr decoding_read(void);
extern XLogRecPtr decoded_save(XLogRecPtr *before);
extern void decoded_note_file(XLogRecPtr before, XLogRecPtr end);
extern void decoded_remove_all(void);
extern bool decoded_trim(XLogRecPtr upto, int limit);
extern XLogRecPtr decoded_load(XLogRecPtr after, XLogRecPtr upto, int64 want);

/* apply.c */
extern bool apply_unit(ApplyUnit *u);
extern bool unit_cancelled(ApplyUnit *u);
extern void park_event(AsyncProjection *ap, int64 position, ApplyUnit *u);
extern void stop_projection(AsyncProjection *ap, int64 position, ApplyUnit *u);
extern bool apply_live_unit(AsyncProjection *ap, XLogRecPtr upto);

/* checkpoint.c */
extern int	server_statement_timeout;
extern int	server_lock_timeout;
extern int	spi_run(KeptPlan *kp, int nargs, Oid *types, Datum *values,
					const char *nulls, bool read_only);
extern List *load_projections(const char *name, bool lock);
extern AsyncProjection *pick_projection(XLogRecPtr upto, XLogRecPtr target,
										XLogRecPtr logged);
extern bool extension_ready(void);
extern bool name_in(List *names, const char *name);

/* state.c: every transition of a projection's state */
extern bool is_live(AsyncProjection *ap);
extern bool is_active(AsyncProjection *ap);
extern void state_lock(const char *name, bool for_drop, StateRow *row);
extern void state_reset(StateRow *row, bool unpause);
extern void state_caught_up(AsyncProjection *ap, int64 caught_up_to);
extern void state_go_live(AsyncProjection *ap, int64 caught_up_to, XLogRecPtr l0,
						  Datum snap, XLogRecPtr snap_lsn);
extern void save_checkpoint(AsyncProjection *ap, bool applied, bool forget_snapshot);
extern void state_note_waiting(const char *why);
extern void state_clear_waiting(void);

/* SQL functions of launcher.c and handler.c that state.c calls directly */
extern PGDLLEXPORT Datum es_projector_wake(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum es_projection_changed(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum es_projection_replay(PG_FUNCTION_ARGS);

/* catchup.c */
extern bool catchup_step(const char *name);

/* slot.c */
extern TimestampTz attach_retry_at;
extern AttachResult projector_attach(void);
extern void projector_detach(void);

#endif							/* ES_PROJECTOR_H */
