/*-------------------------------------------------------------------------
 *
 * state.c
 *	  The one owner of a projection's state: every change of its row in
 *	  es.projections (and of its parked events, on a rebuild) is a named
 *	  transition here, whoever triggers it.
 *
 * An async projection is in one phase, and may be paused or failed besides:
 *
 *        create          rebuild (from any phase), lost slot (live ones)
 *          |                               |
 *          v                               v
 *     catching_up                     rebuilding
 *          |                               |
 *          +-------> switch to live <------+
 *                          |
 *                          v
 *                        live
 *
 *   A catch-up step moves caught_up_to (catching_up, rebuilding); a live
 *   unit moves applied_lsn (live).  paused: pause sets it, resume and
 *   rebuild clear it.  failed (failed_at): stop sets it, resume and rebuild
 *   clear it.  A worker takes neither a paused nor a failed projection.
 *   drop ends every state.
 *
 * | transition        | who                          | function            |
 * |-------------------+------------------------------+---------------------|
 * | create            | es.create_projection         | state_create        |
 * | pause, resume     | es.pause/resume_projection   | state_pause/_resume |
 * | rebuild           | es.rebuild_projection        | state_rebuild       |
 * | rebuild (reset)   | the above; the projector     | state_reset         |
 * |                   | when the slot is lost        |                     |
 * | drop              | es.drop_projection           | state_drop          |
 * | catch-up step     | a projection worker          | state_caught_up     |
 * | switch to live    | a projection worker          | state_go_live       |
 * | live checkpoint   | a projection worker (apply.c)| save_checkpoint     |
 * | stop              | a projection worker (with    | state_stop          |
 * |                   | the checkpoint of its unit); |                     |
 * |                   | the projector, for a slot    |                     |
 * |                   | moved past the checkpoint    |                     |
 * | waiting note      | the projector (slot.c)       | state_note_waiting  |
 *
 * In C, a live projection has phase 'live' and an applied_lsn (is_live);
 * an active one is neither paused nor failed (is_active).
 *
 * An inline projection is running or paused (paused_at_position: what it
 * had applied); create, resume and rebuild replay the history it missed
 * (es._projection_replay) while their caller holds es.events in SHARE mode.
 *
 * The admin functions (PL/pgSQL) check the arguments and the caller's
 * rights and take their locks, then call es._projection_register or
 * es._projection_transition, which lock the row (waiting for a worker's
 * unit in flight) and run the transition.  The projector's and the
 * workers' transitions use only what es.projections has had since 0.3.0:
 * a database not yet updated runs on this library too.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"

#include "es.h"
#include "projector/projector.h"

/* The prefix of the last_error that says why the projector waits */
#define WAITING_PREFIX "waiting: "

/* Run a plan whose one parameter is the projection's name.  In SPI. */
static void
state_run(KeptPlan *plan, const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};

	spi_run(plan, 1, types, values, NULL, false);
}

/*
 * At commit, wake the projector and its workers (an async projection), or
 * only es.wait_for_projection's waiters (an inline one): what
 * es._projector_wake() and es._projection_changed() do.  Every transition
 * calls it, so that its transaction also refuses PREPARE TRANSACTION
 * (projector_xact_callback).
 */
static void
state_notify(bool async)
{
	LOCAL_FCINFO(fcinfo, 0);

	InitFunctionCallInfoData(*fcinfo, NULL, 0, InvalidOid, NULL, NULL);
	if (async)
		(void) es_projector_wake(fcinfo);
	else
		(void) es_projection_changed(fcinfo);
}

/* An inline projection replays the events after "from" (es._projection_replay) */
static void
state_replay(const char *name, int64 from)
{
	(void) DirectFunctionCall2(es_projection_replay, CStringGetTextDatum(name),
							   Int64GetDatum(from));
}

/* ------------------------------------------------------------------------
 * The states
 * ------------------------------------------------------------------------
 */

/* Live: follows the decoded stream from its checkpoint, applied_lsn */
bool
is_live(AsyncProjection *ap)
{
	return strcmp(ap->phase, "live") == 0 && !XLogRecPtrIsInvalid(ap->applied_lsn);
}

/* Active: neither paused nor failed, so a worker may take it */
bool
is_active(AsyncProjection *ap)
{
	return !ap->p->paused && !ap->failed;
}

#define LOCK_SQL \
	"SELECT p.mode OPERATOR(pg_catalog.=) 'async', p.paused, p.paused_at_position," \
	"       p.tables::pg_catalog.oid[]" \
	"  FROM ONLY es.projections p WHERE p.name OPERATOR(pg_catalog.=) $1"

static KeptPlan lock_plan = {LOCK_SQL " FOR NO KEY UPDATE OF p", NULL};
static KeptPlan lock_for_drop_plan = {LOCK_SQL " FOR UPDATE OF p", NULL};

/* An array of OIDs as a list */
static List *
state_oid_list(Datum array)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	List	   *oids = NIL;

	deconstruct_array(DatumGetArrayTypeP(array), OIDOID, sizeof(Oid), true,
					  TYPALIGN_INT, &elems, &nulls, &n);
	for (i = 0; i < n; i++)
		if (!nulls[i])
			oids = lappend_oid(oids, DatumGetObjectId(elems[i]));
	return oids;
}

/*
 * Lock the row of projection "name" (for a drop: as a DELETE does) and read
 * what its transitions need, into the current memory context; 42704 when
 * it is gone (a drop committed while the caller waited).  In SPI.
 */
void
state_lock(const char *name, bool for_drop, StateRow *row)
{
	MemoryContext cxt = CurrentMemoryContext;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;

	state_run(for_drop ? &lock_for_drop_plan : &lock_plan, name);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("projection \"%s\" does not exist", name)));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	row->name = MemoryContextStrdup(cxt, name);
	row->async = DatumGetBool(SPI_getbinval(tup, desc, 1, &isnull));
	row->paused = DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull));
	d = SPI_getbinval(tup, desc, 3, &row->paused_at_null);
	row->paused_at_position = row->paused_at_null ? 0 : DatumGetInt64(d);
	d = SPI_getbinval(tup, desc, 4, &isnull);
	row->tables = NIL;
	if (!isnull)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		row->tables = state_oid_list(d);
		MemoryContextSwitchTo(old);
	}
}

/* ------------------------------------------------------------------------
 * The admin functions' transitions (in a backend)
 * ------------------------------------------------------------------------
 */

static KeptPlan create_plan = {
	"INSERT INTO es.projections AS p (name, handler, event_types, mode, tables, on_error,"
	"                                 phase, catchup_target)"
	" VALUES ($1, $2, $3, $4, coalesce($5, '{}'), $6,"
	"         CASE WHEN $4 OPERATOR(pg_catalog.=) 'async' THEN 'catching_up' ELSE 'live' END,"
	"         CASE WHEN $4 OPERATOR(pg_catalog.=) 'async'"
	"              THEN (SELECT coalesce(pg_catalog.max(e.global_position), 0)"
	"                      FROM ONLY es.events e) ELSE 0 END)"
	" RETURNING p.name, p.mode OPERATOR(pg_catalog.=) 'async'", NULL
};

/*
 * Create: the row in its first state.  An async projection starts
 * catching up (a worker reads the table up to the position stored now, then
 * follows the commits); an inline one replays the history now.
 */
static void
state_create(Datum *values, const char *nulls)
{
	Oid			types[6] = {TEXTOID, REGPROCEDUREOID, TEXTARRAYOID, TEXTOID,
	REGCLASSARRAYOID, TEXTOID};
	char	   *name;
	bool		async;
	bool		isnull;

	spi_run(&create_plan, 6, types, values, nulls, false);
	name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	async = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									   2, &isnull));
	if (!async)
		state_replay(name, 0);
	state_notify(async);
}

static KeptPlan pause_async_plan = {
	"UPDATE ONLY es.projections SET paused = true"
	" WHERE name OPERATOR(pg_catalog.=) $1", NULL
};

static KeptPlan pause_inline_plan = {
	"UPDATE ONLY es.projections SET paused = true,"
	"       paused_at_position = (SELECT coalesce(pg_catalog.max(e.global_position), 0)"
	"                               FROM ONLY es.events e)"
	" WHERE name OPERATOR(pg_catalog.=) $1", NULL
};

/*
 * Pause: no worker takes an async projection any more (a live one keeps
 * its checkpoint, and holds WAL); an inline one notes what it has applied,
 * every committed event (its caller holds es.events).
 */
static void
state_pause(StateRow *row)
{
	if (!row->async && row->paused)
		return;
	state_run(row->async ? &pause_async_plan : &pause_inline_plan, row->name);
	state_notify(row->async);
}

static KeptPlan resume_async_plan = {
	"UPDATE ONLY es.projections SET paused = false, failed_at = NULL"
	" WHERE name OPERATOR(pg_catalog.=) $1", NULL
};

static KeptPlan unpause_inline_plan = {
	"UPDATE ONLY es.projections SET paused = false, paused_at_position = NULL"
	" WHERE name OPERATOR(pg_catalog.=) $1", NULL
};

/*
 * Resume: an async projection, paused or failed, becomes active again (a
 * failed one retries the event it stopped at); an inline one replays what
 * was appended while it was paused.
 */
static void
state_resume(StateRow *row)
{
	if (row->async)
	{
		state_run(&resume_async_plan, row->name);
		state_notify(true);
	}
	else if (row->paused)
	{
		state_run(&unpause_inline_plan, row->name);
		if (!row->paused_at_null)
			state_replay(row->name, row->paused_at_position);
		state_notify(false);
	}
}

/*
 * Empty the projection's tables, each as its owner: no role's rights come
 * into it but the tables' owners' (their TRUNCATE triggers run as them)
 */
static void
state_truncate(StateRow *row)
{
	ListCell   *lc;

	foreach(lc, row->tables)
		projection_truncate_as_owner(lfirst_oid(lc), row->name);
}

/*
 * Rebuild: the tables emptied; an async projection starts a new catch-up
 * (state_reset), an inline one replays the whole history now.
 */
static void
state_rebuild(StateRow *row)
{
	if (row->async)
	{
		state_reset(row, true);
		state_notify(true);
		return;
	}
	state_truncate(row);
	state_run(&unpause_inline_plan, row->name);
	state_replay(row->name, 0);
	state_notify(false);
}

static KeptPlan drop_plan = {
	"DELETE FROM ONLY es.projections WHERE name OPERATOR(pg_catalog.=) $1", NULL
};

/*
 * Drop: the row goes, and its parked events with it (ON DELETE CASCADE);
 * the read tables stay.  The last async projection gone, the projector
 * drops its slot.
 */
static void
state_drop(StateRow *row)
{
	state_run(&drop_plan, row->name);
	state_notify(row->async);
}

/* The admin transitions by name, as es._projection_transition takes them */
static const struct
{
	const char *name;
	void		(*run) (StateRow *row);
}			admin_transitions[] =
{
	{"pause", state_pause},
	{"resume", state_resume},
	{"rebuild", state_rebuild},
	{"drop", state_drop},
};

PG_FUNCTION_INFO_V1(es_projection_register);

/*
 * es._projection_register(name, handler, event_types, mode, tables,
 * on_error): create (state_create), once es._create_projection has checked
 * the arguments and the caller's rights, and, for an inline projection,
 * locked es.events.
 */
Datum
es_projection_register(PG_FUNCTION_ARGS)
{
	Datum		values[6];
	char		nulls[6];
	int			guc_level;
	int			i;

	for (i = 0; i < 6; i++)
	{
		values[i] = PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}
	guc_level = es_internal_begin();
	SPI_connect();
	state_create(values, nulls);
	SPI_finish();
	es_internal_end(guc_level);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(es_projection_transition);

/*
 * es._projection_transition(name, transition): pause, resume, rebuild or
 * drop the projection, once the admin function has checked the caller's
 * rights and taken its locks.  The row is locked first: a worker's unit in
 * flight finishes, and the next one sees the new state.
 */
Datum
es_projection_transition(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *transition = text_to_cstring(PG_GETARG_TEXT_PP(1));
	StateRow	row;
	int			guc_level;
	int			i;

	for (i = 0; i < lengthof(admin_transitions); i++)
		if (strcmp(admin_transitions[i].name, transition) == 0)
			break;
	if (i == lengthof(admin_transitions))
		elog(ERROR, "es: unknown projection transition \"%s\"", transition);
	guc_level = es_internal_begin();
	SPI_connect();
	state_lock(name, admin_transitions[i].run == state_drop, &row);
	admin_transitions[i].run(&row);
	SPI_finish();
	es_internal_end(guc_level);
	PG_RETURN_VOID();
}

/* ------------------------------------------------------------------------
 * The projector's and the workers' transitions
 * ------------------------------------------------------------------------
 */

#define RESET_SQL \
	"UPDATE ONLY es.projections" \
	"   SET phase = 'rebuilding', failed_at = NULL, last_error = NULL," \
	"       last_error_position = NULL, caught_up_to = 0, last_position = 0," \
	"       applied_lsn = NULL, live_snapshot = NULL, live_snapshot_lsn = NULL," \
	"       last_applied_at = NULL," \
	"       catchup_target = (SELECT coalesce(pg_catalog.max(e.global_position), 0)" \
	"                           FROM ONLY es.events e)"

static KeptPlan reset_plan = {RESET_SQL " WHERE name OPERATOR(pg_catalog.=) $1", NULL};
static KeptPlan reset_unpause_plan = {
	RESET_SQL ", paused = false WHERE name OPERATOR(pg_catalog.=) $1", NULL
};

static KeptPlan errors_clear_plan = {
	"DELETE FROM ONLY es.projection_errors e"
	" WHERE e.projection OPERATOR(pg_catalog.=) $1", NULL
};

/*
 * Reset an async projection, locked (state_lock), to the start of a
 * catch-up (phase 'rebuilding', no checkpoint, no error, no parked event)
 * with its tables emptied.  es.rebuild_projection also resumes it
 * ("unpause"); after a lost slot, a paused one stays paused.  In SPI.
 */
void
state_reset(StateRow *row, bool unpause)
{
	state_run(unpause ? &reset_unpause_plan : &reset_plan, row->name);
	state_truncate(row);
	state_run(&errors_clear_plan, row->name);
}

static KeptPlan stop_plan = {
	"UPDATE ONLY es.projections SET failed_at = pg_catalog.now(), last_error = $2,"
	"       last_error_position = $3"
	" WHERE name OPERATOR(pg_catalog.=) $1", NULL
};

/*
 * Stop: the projection failed in this unit (stop_projection noted the
 * error); no worker takes it until it is resumed or rebuilt.  In SPI, with
 * the unit's checkpoint.
 */
static void
state_stop(AsyncProjection *ap)
{
	Oid			types[3] = {TEXTOID, TEXTOID, INT8OID};
	Datum		values[3];

	values[0] = CStringGetTextDatum(ap->p->name);
	values[1] = CStringGetTextDatum(ap->error_message);
	values[2] = Int64GetDatum(ap->error_position);
	spi_run(&stop_plan, 3, types, values, NULL, false);
}

/* Save a worker's checkpoint of "ap" with "plan" ($1 its name), and its stop */
static void
state_save(AsyncProjection *ap, KeptPlan *plan, int nargs, Oid *types, Datum *values)
{
	values[0] = CStringGetTextDatum(ap->p->name);
	SPI_connect();
	spi_run(plan, nargs, types, values, NULL, false);
	if (ap->stopped)
		state_stop(ap);
	SPI_finish();
}

static KeptPlan live_checkpoint_plan = {
	"UPDATE ONLY es.projections SET applied_lsn = $2,"
	"       last_position = greatest(last_position, $3),"
	"       last_applied_at = CASE WHEN $4 THEN pg_catalog.now() ELSE last_applied_at END,"
	"       live_snapshot = CASE WHEN $5 THEN NULL ELSE live_snapshot END,"
	"       live_snapshot_lsn = CASE WHEN $5 THEN NULL ELSE live_snapshot_lsn END"
	" WHERE name OPERATOR(pg_catalog.=) $1", NULL
};

/*
 * A live unit's checkpoint: applied_lsn (and last_applied_at when it
 * "applied" events), S forgotten when the unit passed live_snapshot_lsn
 * ("forget_snapshot"); the stop, if the unit stopped.
 */
void
save_checkpoint(AsyncProjection *ap, bool applied, bool forget_snapshot)
{
	Oid			types[5] = {TEXTOID, PG_LSNOID, INT8OID, BOOLOID, BOOLOID};
	Datum		values[5];

	values[1] = LSNGetDatum(ap->new_applied_lsn);
	values[2] = Int64GetDatum(ap->last_position);
	values[3] = BoolGetDatum(applied);
	values[4] = BoolGetDatum(forget_snapshot);
	state_save(ap, &live_checkpoint_plan, 5, types, values);
}

#define CAUGHT_UP_SQL \
	"UPDATE ONLY es.projections SET caught_up_to = $2," \
	"       last_position = greatest(last_position, $2)," \
	"       last_applied_at = pg_catalog.now()"

static KeptPlan caught_up_plan = {
	CAUGHT_UP_SQL " WHERE name OPERATOR(pg_catalog.=) $1", NULL
};
static KeptPlan go_live_plan = {
	CAUGHT_UP_SQL ", phase = 'live', applied_lsn = $3, live_snapshot = $4,"
	"       live_snapshot_lsn = $5"
	" WHERE name OPERATOR(pg_catalog.=) $1", NULL
};

/*
 * A catch-up step's checkpoint: every event up to caught_up_to was
 * applied, none after it; the stop, if the step stopped.
 */
void
state_caught_up(AsyncProjection *ap, int64 caught_up_to)
{
	Oid			types[2] = {TEXTOID, INT8OID};
	Datum		values[2];

	values[1] = Int64GetDatum(caught_up_to);
	state_save(ap, &caught_up_plan, 2, types, values);
}

/*
 * The switch to live (catchup.c): caught up to caught_up_to with S
 * ("snap", taken before the WAL insert position "snap_lsn"), the decoded
 * stream followed from L0 ("l0") on.
 */
void
state_go_live(AsyncProjection *ap, int64 caught_up_to, XLogRecPtr l0, Datum snap,
			  XLogRecPtr snap_lsn)
{
	Oid			types[5] = {TEXTOID, INT8OID, PG_LSNOID, PG_SNAPSHOTOID, PG_LSNOID};
	Datum		values[5];

	values[1] = Int64GetDatum(caught_up_to);
	values[2] = LSNGetDatum(l0);
	values[3] = snap;
	values[4] = LSNGetDatum(snap_lsn);
	state_save(ap, &go_live_plan, 5, types, values);
}

/*
 * The waiting notes in last_error (slot.c's projector_wait), each behind a
 * look that writes nothing (an UPDATE of es.projections fires its
 * statement trigger, which sends an invalidation, even when no row
 * changes).
 */
static KeptPlan waiting_note_check_plan = {
	"SELECT FROM ONLY es.projections"
	" WHERE mode OPERATOR(pg_catalog.=) 'async' AND failed_at IS NULL"
	"   AND (last_error IS NULL OR last_error OPERATOR(pg_catalog.<>) $1) LIMIT 1", NULL
};

static KeptPlan waiting_note_plan = {
	"UPDATE ONLY es.projections SET last_error = $1"
	" WHERE mode OPERATOR(pg_catalog.=) 'async' AND failed_at IS NULL"
	"   AND (last_error IS NULL OR last_error OPERATOR(pg_catalog.<>) $1)", NULL
};

static KeptPlan waiting_clear_check_plan = {
	"SELECT FROM ONLY es.projections"
	" WHERE mode OPERATOR(pg_catalog.=) 'async' AND failed_at IS NULL"
	"   AND pg_catalog.starts_with(last_error, $1) LIMIT 1", NULL
};

static KeptPlan waiting_clear_plan = {
	"UPDATE ONLY es.projections SET last_error = NULL"
	" WHERE mode OPERATOR(pg_catalog.=) 'async' AND failed_at IS NULL"
	"   AND pg_catalog.starts_with(last_error, $1)", NULL
};

/* Run "update" with the text "arg" when "check" finds a row */
static void
state_update_if_needed(KeptPlan *check, KeptPlan *update, const char *arg)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(arg)};

	SPI_connect();
	spi_run(check, 1, types, values, NULL, true);
	if (SPI_processed > 0)
		spi_run(update, 1, types, values, NULL, false);
	SPI_finish();
}

/*
 * The projector waits (slot.c): "why" becomes the last_error of every
 * async projection that has not failed, until state_clear_waiting.
 */
void
state_note_waiting(const char *why)
{
	state_update_if_needed(&waiting_note_check_plan, &waiting_note_plan,
						   psprintf(WAITING_PREFIX "%s", why));
}

/* The projector no longer waits: the notes go */
void
state_clear_waiting(void)
{
	state_update_if_needed(&waiting_clear_check_plan, &waiting_clear_plan,
						   WAITING_PREFIX);
}
