/*-------------------------------------------------------------------------
 *
 * checkpoint.c
 *	  The projector's reads of es.projections: loading the async projections
 *	  with their checkpoints (and their handlers' timeouts), and whether es
 *	  is ready for them; the kept SPI plans of the projector's statements.
 *	  Every write of a projection's state is a transition of state.c.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/extension.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "es.h"
#include "projector/projector.h"

/* ------------------------------------------------------------------------
 * The projector's transactions
 * ------------------------------------------------------------------------
 */

int
spi_run(KeptPlan *kp, int nargs, Oid *types, Datum *values, const char *nulls,
		bool read_only)
{
	int			rc;

	if (kp->plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare_cursor(kp->sql, nargs, types, kp->cursor_options);

		if (plan == NULL)
			elog(ERROR, "es projector: SPI_prepare failed: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		kp->plan = plan;
	}
	rc = SPI_execute_plan(kp->plan, values, nulls, read_only, 0);
	if (rc < 0)
		elog(ERROR, "es projector: SPI_execute_plan failed: %s",
			 SPI_result_code_string(rc));
	return rc;
}

/* An async projection's row, as load_projections reads it ($2: MyDatabaseId) */
#define LOAD_COLUMNS \
	"SELECT p.name, p.handler::pg_catalog.oid AS handler, p.event_types, p.paused," \
	"       pr.proowner, p.on_error, p.phase, p.caught_up_to, p.last_position," \
	"       p.applied_lsn, p.live_snapshot, p.live_snapshot_lsn," \
	"       p.failed_at IS NOT NULL AS failed," \
	"       pg_catalog.to_jsonb(p) OPERATOR(pg_catalog.->>) 'search_path' AS search_path," \
	"       (SELECT pg_catalog.substr(c, 19)" \
	"          FROM pg_catalog.pg_db_role_setting s, pg_catalog.unnest(s.setconfig) c" \
	"         WHERE s.setdatabase OPERATOR(pg_catalog.=) ANY (ARRAY[0, $2]::pg_catalog.oid[])" \
	"           AND s.setrole OPERATOR(pg_catalog.=) ANY (ARRAY[0, pr.proowner])" \
	"           AND c OPERATOR(pg_catalog.~~) 'statement\\_timeout=%'" \
	"         ORDER BY s.setrole OPERATOR(pg_catalog.=) 0, s.setdatabase OPERATOR(pg_catalog.=) 0" \
	"         LIMIT 1) AS statement_timeout," \
	"       (SELECT pg_catalog.substr(c, 14)" \
	"          FROM pg_catalog.pg_db_role_setting s, pg_catalog.unnest(s.setconfig) c" \
	"         WHERE s.setdatabase OPERATOR(pg_catalog.=) ANY (ARRAY[0, $2]::pg_catalog.oid[])" \
	"           AND s.setrole OPERATOR(pg_catalog.=) ANY (ARRAY[0, pr.proowner])" \
	"           AND c OPERATOR(pg_catalog.~~) 'lock\\_timeout=%'" \
	"         ORDER BY s.setrole OPERATOR(pg_catalog.=) 0, s.setdatabase OPERATOR(pg_catalog.=) 0" \
	"         LIMIT 1) AS lock_timeout" \
	"  FROM ONLY es.projections p JOIN pg_catalog.pg_proc pr" \
	"    ON pr.oid OPERATOR(pg_catalog.=) p.handler::pg_catalog.oid"
#define LOAD_SQL LOAD_COLUMNS \
	" WHERE p.mode OPERATOR(pg_catalog.=) 'async'" \
	"   AND ($1 IS NULL OR p.name OPERATOR(pg_catalog.=) $1)"

/*
 * With the rows locked (a worker), or not (the projector's look).  A row
 * that another transaction holds is skipped, not waited for: another
 * worker applies that projection (or an admin call changes it), and a
 * worker that waited would apply nothing else meanwhile, a whole unit of a
 * slow handler long.
 */
static KeptPlan load_plan = {LOAD_SQL " ORDER BY p.name FOR NO KEY UPDATE OF p SKIP LOCKED", NULL};
static KeptPlan load_nolock_plan = {LOAD_SQL " ORDER BY p.name", NULL};

/*
 * The timeouts of handlers.  A session of the handler's owner in this
 * database would get statement_timeout and lock_timeout from the settings
 * of the owner in the database, of the owner, of the database (ALTER ROLE
 * / ALTER DATABASE ... SET, pg_db_role_setting), else from the server's
 * configuration: the projector applies the same to each handler call, with
 * the server's values as they were when it started (its own session has
 * the bootstrap superuser's and pins lock_timeout to 0).  0: none.
 */
int			server_statement_timeout = 0;
int			server_lock_timeout = 0;

/* A stored setting's value in milliseconds, else "otherwise" */
static int
handler_timeout(const char *value, int otherwise)
{
	int			ms;

	if (value == NULL || !parse_int(value, &ms, GUC_UNIT_MS, NULL) || ms < 0)
		return otherwise;
	return ms;
}

/*
 * Load the async projections (all, or the one named; locked when "lock",
 * without those another transaction holds) into the current memory
 * context, with their handlers' timeouts.
 */
static List *load_rows(KeptPlan *kp, int nargs, Oid *types, Datum *values,
					   const char *nulls, bool read_only);
static void state_from_row(AsyncProjection *ap, HeapTuple tup, TupleDesc desc);

List *
load_projections(const char *name, bool lock)
{
	Oid			types[2] = {TEXTOID, OIDOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};

	values[0] = name ? CStringGetTextDatum(name) : (Datum) 0;
	nulls[0] = name ? ' ' : 'n';
	values[1] = ObjectIdGetDatum(MyDatabaseId);
	return load_rows(lock ? &load_plan : &load_nolock_plan, 2, types, values, nulls, !lock);
}

/*
 * An async projection's state, from a row with the columns of LOAD_COLUMNS
 * from on_error to failed, in the current memory context.
 */
static void
state_from_row(AsyncProjection *ap, HeapTuple tup, TupleDesc desc)
{
	bool		isnull;
	Datum		d;

	ap->park = strcmp(SPI_getvalue(tup, desc, SPI_fnumber(desc, "on_error")), "park") == 0;
	ap->phase = SPI_getvalue(tup, desc, SPI_fnumber(desc, "phase"));
	ap->caught_up_to = DatumGetInt64(SPI_getbinval(tup, desc, SPI_fnumber(desc, "caught_up_to"), &isnull));
	ap->last_position = DatumGetInt64(SPI_getbinval(tup, desc, SPI_fnumber(desc, "last_position"), &isnull));
	d = SPI_getbinval(tup, desc, SPI_fnumber(desc, "applied_lsn"), &isnull);
	ap->applied_lsn = isnull ? InvalidXLogRecPtr : DatumGetLSN(d);
	d = SPI_getbinval(tup, desc, SPI_fnumber(desc, "live_snapshot"), &isnull);
	ap->live_snapshot = isnull ? (Datum) 0 : datumCopy(d, false, -1);
	d = SPI_getbinval(tup, desc, SPI_fnumber(desc, "live_snapshot_lsn"), &isnull);
	ap->live_snapshot_lsn = isnull ? InvalidXLogRecPtr : DatumGetLSN(d);
	ap->failed = DatumGetBool(SPI_getbinval(tup, desc, SPI_fnumber(desc, "failed"), &isnull));
	ap->new_applied_lsn = ap->applied_lsn;
}

/*
 * Run "kp", a statement that returns LOAD_COLUMNS, and make its rows async
 * projections, in the current memory context.
 */
static List *
load_rows(KeptPlan *kp, int nargs, Oid *types, Datum *values, const char *nulls,
		  bool read_only)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *result = NIL;
	uint64		i;

	SPI_connect();
	spi_run(kp, nargs, types, values, nulls, read_only);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(cxt);
		AsyncProjection *ap = palloc0(sizeof(AsyncProjection));

		ap->p = projection_from_row(tup, desc, cxt);
		state_from_row(ap, tup, desc);
		ap->p->statement_timeout =
			handler_timeout(SPI_getvalue(tup, desc, SPI_fnumber(desc, "statement_timeout")),
							server_statement_timeout);
		ap->p->lock_timeout =
			handler_timeout(SPI_getvalue(tup, desc, SPI_fnumber(desc, "lock_timeout")),
							server_lock_timeout);
		result = lappend(result, ap);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return result;
}

/*
 * A projection worker: the next projection with work that nobody holds,
 * its row locked (NULL: none); the least recently applied first.  Live
 * ones have work when their checkpoint is behind the last logged commit
 * ("logged"), or behind "target" (somebody waits), or far behind what was
 * decoded ("upto": to let the slot go); one that reads the table always
 * has.  In the current memory context; a live unit applies it in this
 * transaction without reading its row again.
 *
 * A worker picks for each unit, and a live unit under a steady stream of
 * appends is a few events: the pick is kept small.  The rows are found
 * through the primary key, by the names of the async projections: every
 * unit updates its projection's row, so that the table spans many pages
 * once a long transaction has held back their pruning (a slow handler's
 * unit, a catch-up step), and VACUUM does not give those pages back while
 * workers use the table.  And what changes only with a projection's
 * definition (its handler, its owner's timeouts: load_projections) is
 * kept by the worker between units (pick_cache).
 */
static KeptPlan pick_plan = {
	"SELECT p.name, p.on_error, p.phase, p.caught_up_to, p.last_position,"
	"       p.applied_lsn, p.live_snapshot, p.live_snapshot_lsn,"
	"       p.failed_at IS NOT NULL AS failed"
	"  FROM ONLY es.projections p"
	" WHERE p.name OPERATOR(pg_catalog.=) ANY ($5::pg_catalog.text[])"
	"   AND p.mode OPERATOR(pg_catalog.=) 'async' AND NOT p.paused AND p.failed_at IS NULL"
	"   AND (p.phase OPERATOR(pg_catalog.<>) 'live' OR p.applied_lsn IS NULL"
	"        OR (p.applied_lsn OPERATOR(pg_catalog.<) $1"
	"            AND (p.applied_lsn OPERATOR(pg_catalog.<) $2"
	"                 OR p.applied_lsn OPERATOR(pg_catalog.<) $3"
	"                 OR p.applied_lsn OPERATOR(pg_catalog.<) $4)))"
	" ORDER BY p.last_applied_at NULLS FIRST, p.name"
	" LIMIT 1 FOR NO KEY UPDATE OF p SKIP LOCKED", NULL, CURSOR_OPT_GENERIC_PLAN
};

static KeptPlan names_plan = {
	"SELECT pg_catalog.array_agg(p.name) FROM ONLY es.projections p"
	" WHERE p.mode OPERATOR(pg_catalog.=) 'async'", NULL
};

/*
 * The worker's cache: the names of the async projections (a text[]), and
 * the projections it picked, as load_projections read them.  Read again
 * when a change of a projection's state committed since (registry_gen,
 * see projector_xact_callback), when a function changed
 * (pick_proc_callback), and at least every second (a change of a handler
 * owner's settings, or of the table by hand).
 */
static MemoryContext pick_cxt = NULL;
static Datum pick_names = (Datum) 0;
static List *pick_projections = NIL;
static uint32 pick_gen = 0;
static TimestampTz pick_at = 0;
static bool pick_stale = false;

/*
 * A function changed (CREATE OR REPLACE of a handler: its language, its
 * SET clauses): the definitions kept hold its FmgrInfo; read them again.
 */
void
pick_proc_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	pick_stale = true;
}

/* Forget the names and the definitions kept */
static void
pick_forget(void)
{
	MemoryContextReset(pick_cxt);
	pick_names = (Datum) 0;
	pick_projections = NIL;
}

static uint32
registry_gen_read(void)
{
	pg_memory_barrier();
	return pg_atomic_read_u32(&projector->registry_gen);
}

static void
pick_cache(void)
{
	TimestampTz now = GetCurrentTimestamp();
	uint32		registry_gen = registry_gen_read();
	bool		isnull;
	Datum		d;

	if (pick_cxt != NULL && pick_names != (Datum) 0 && pick_gen == registry_gen &&
		!pick_stale && !TimestampDifferenceExceeds(pick_at, now, 1000))
		return;
	pick_stale = false;
	if (pick_cxt == NULL)
		pick_cxt = AllocSetContextCreate(TopMemoryContext, "es projection worker cache",
										 ALLOCSET_SMALL_SIZES);
	pick_forget();
	SPI_connect();
	spi_run(&names_plan, 0, NULL, NULL, NULL, false);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
	{
		MemoryContext old = MemoryContextSwitchTo(pick_cxt);

		pick_names = datumCopy(d, false, -1);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	pick_gen = registry_gen;
	pick_at = now;
}

/* The projection named, from the cache, else read (with its row locked) */
static Projection *
pick_projection_def(const char *name)
{
	ListCell   *lc;
	MemoryContext old;
	List	   *aps;

	foreach(lc, pick_projections)
	{
		Projection *p = lfirst(lc);

		if (strcmp(p->name, name) == 0)
			return p;
	}
	/* as its row is now: ours, locked */
	old = MemoryContextSwitchTo(pick_cxt);
	PushActiveSnapshot(GetLatestSnapshot());
	aps = load_projections(name, false);
	PopActiveSnapshot();
	if (aps != NIL)
		pick_projections = lappend(pick_projections, ((AsyncProjection *) linitial(aps))->p);
	MemoryContextSwitchTo(old);
	return aps != NIL ? ((AsyncProjection *) linitial(aps))->p : NULL;
}

AsyncProjection *
pick_projection(XLogRecPtr upto, XLogRecPtr target, XLogRecPtr logged)
{
	Oid			types[5] = {PG_LSNOID, PG_LSNOID, PG_LSNOID, PG_LSNOID, TEXTARRAYOID};
	Datum		values[5];
	MemoryContext cxt = CurrentMemoryContext;
	AsyncProjection *ap = NULL;
	char	   *name = NULL;

	pick_cache();
	if (pick_names == (Datum) 0)
		return NULL;			/* no async projection */
	values[0] = LSNGetDatum(upto);
	values[1] = LSNGetDatum(Min(target, upto));
	values[2] = LSNGetDatum(upto > RAISE_EVERY_BYTES ? upto - RAISE_EVERY_BYTES : 0);
	values[3] = LSNGetDatum(Min(logged, upto));
	values[4] = pick_names;
	SPI_connect();
	spi_run(&pick_plan, 5, types, values, NULL, false);
	if (SPI_processed > 0)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		ap = palloc0(sizeof(AsyncProjection));
		name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		state_from_row(ap, SPI_tuptable->vals[0], SPI_tuptable->tupdesc);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	if (ap == NULL)
		return NULL;

	/*
	 * A change committed since the cache was read, which the pick's
	 * snapshot may show (it was counted before it became visible), or a
	 * function changed: read the definition again.  A function changed
	 * before what the snapshot shows (an append made after CREATE OR
	 * REPLACE returned) has sent its invalidations by now: take them.  The
	 * row is ours now: it cannot change again until we commit.
	 */
	AcceptInvalidationMessages();
	if (registry_gen_read() != pick_gen || pick_stale)
		pick_forget();
	ap->p = pick_projection_def(name);
	return ap->p != NULL ? ap : NULL;
}

/*
 * Is es installed here, at a version with async projections?  Locks
 * es.events, then es.projections, for the transaction (in a transaction).
 */
bool
extension_ready(void)
{
	Oid			nsp;
	Oid			events;
	Oid			relid;

	if (!OidIsValid(get_extension_oid("es", true)))
		return false;
	nsp = get_namespace_oid("es", true);
	if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid("projection_errors", nsp)))
		return false;
	/*
	 * Wait out a DROP EXTENSION in progress, then look again.  es.events
	 * first: DROP EXTENSION locks it before es.projections, and a worker
	 * that held es.projections (its row) and then waited for es.events
	 * deadlocked with it.
	 */
	events = get_relname_relid("events", nsp);
	relid = get_relname_relid("projections", nsp);
	if (!OidIsValid(events) || !OidIsValid(relid))
		return false;
	LockRelationOid(events, AccessShareLock);
	LockRelationOid(relid, AccessShareLock);
	return SearchSysCacheExists1(RELOID, ObjectIdGetDatum(events)) &&
		SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid));
}

bool
name_in(List *names, const char *name)
{
	ListCell   *lc;

	foreach(lc, names)
		if (strcmp(lfirst(lc), name) == 0)
			return true;
	return false;
}
