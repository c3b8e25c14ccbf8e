/*-------------------------------------------------------------------------
 *
 * slot.c
 *	  The publication es_events and the replication slot
 *	  es_projector_<database oid>: es's own or none.  Attaching (creating
 *	  them when missing, waiting while somebody else's stands in the way,
 *	  rebuilding live projections that lost their slot) and detaching.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/dbcommands.h"
#include "replication/slot.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "es.h"
#include "projector/projector.h"

/* Why the projector waits instead of attaching (NULL: it does not) */
static const char *waiting_for = NULL;
static TimestampTz waiting_logged_at = 0;
TimestampTz attach_retry_at = 0;

/* ------------------------------------------------------------------------
 * The publication and the slot: es's own, or none
 * ------------------------------------------------------------------------
 */

/*
 * The publication es_events as the projector finds it.  es's own is owned
 * by a superuser (the projector's own role, the bootstrap superuser, which
 * creates it; or the superuser who restored a dump, which brings it back
 * publishing nothing: pg_dump does not dump an extension table's
 * membership), publishes inserts only, and publishes es.events (whole
 * rows or a column list with global_position, no row filter) and nothing
 * else: no other table, no schema, not FOR ALL TABLES.  A database owner
 * who is not a superuser may create publications, so one named es_events
 * may be somebody else's, made to feed the projector rows of another
 * table as event positions.
 */
typedef enum PubState
{
	PUB_NONE,					/* there is none */
	PUB_OURS,					/* es's own, publishing es.events */
	PUB_OURS_EMPTY,				/* es's own, publishing nothing */
	PUB_FOREIGN					/* somebody else's: not used, not dropped */
} PubState;

static KeptPlan publication_plan = {
	"SELECT p.pubowner, p.puballtables, p.pubinsert,"
	"       p.pubupdate OR p.pubdelete OR p.pubtruncate,"
	"       EXISTS (SELECT FROM pg_catalog.pg_publication_namespace n"
	"                WHERE n.pnpubid OPERATOR(pg_catalog.=) p.oid),"
	"       EXISTS (SELECT FROM pg_catalog.pg_publication_rel r"
	"                WHERE r.prpubid OPERATOR(pg_catalog.=) p.oid"
	"                  AND r.prrelid OPERATOR(pg_catalog.<>) $1),"
	"       EXISTS (SELECT FROM pg_catalog.pg_publication_rel r"
	"                WHERE r.prpubid OPERATOR(pg_catalog.=) p.oid"
	"                  AND r.prrelid OPERATOR(pg_catalog.=) $1),"
	"       EXISTS (SELECT FROM pg_catalog.pg_publication_rel r"
	"                WHERE r.prpubid OPERATOR(pg_catalog.=) p.oid"
	"                  AND r.prrelid OPERATOR(pg_catalog.=) $1"
	"                  AND (r.prqual IS NOT NULL"
	"                       OR NOT (r.prattrs IS NULL OR"
	"                               1::pg_catalog.int2 OPERATOR(pg_catalog.=) ANY (r.prattrs))))"
	"  FROM pg_catalog.pg_publication p"
	" WHERE p.pubname OPERATOR(pg_catalog.=) 'es_events'", NULL
};

/*
 * What the publication es_events is (see PubState), with "events" the OID
 * of es.events (InvalidOid after DROP EXTENSION).  When it is somebody
 * else's, *why says why, in the caller's memory context.  In a
 * transaction.
 */
static PubState
publication_state(Oid events, char **why)
{
	MemoryContext cxt = CurrentMemoryContext;
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(events)};
	PubState	state = PUB_NONE;
	const char *reason = NULL;

	SPI_connect();
	spi_run(&publication_plan, 1, types, values, NULL, true);
	if (SPI_processed > 0)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Oid			owner = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
		bool		b[8];
		int			i;

		for (i = 2; i <= 8; i++)
			b[i - 1] = DatumGetBool(SPI_getbinval(tup, desc, i, &isnull));
		if (owner != GetUserId() && !superuser_arg(owner))
		{
			char	   *rolname = GetUserNameFromId(owner, true);

			reason = psprintf("Its owner is role \"%s\", neither the projector's role nor another superuser",
							  rolname ? rolname : "?");
		}
		else if (b[1])
			reason = "It publishes all tables (FOR ALL TABLES)";
		else if (b[4])
			reason = "It publishes the tables of a schema (FOR TABLES IN SCHEMA)";
		else if (b[5])
			reason = "It publishes tables other than es.events";
		else if (!b[2] || b[3])
			reason = "It does not publish inserts only";
		else if (b[7])
			reason = "It filters the rows or the columns of es.events";
		if (reason != NULL)
		{
			state = PUB_FOREIGN;
			*why = MemoryContextStrdup(cxt, reason);
		}
		else
			state = b[6] ? PUB_OURS : PUB_OURS_EMPTY;
	}
	SPI_finish();
	return state;
}

/*
 * Is the slot es_projector_<database oid> es's own, if it exists (*exists)?
 * Slot names are cluster-wide, and a role with the REPLICATION attribute
 * may create one of that name, in another database or with another output
 * plugin, whose output the decoder would misread.  es's own is a persistent
 * logical slot of this database that decodes with pgoutput, and no other
 * process uses it.  When it is not, *why says why.
 */
static bool
slot_is_ours(bool *exists, char **why)
{
	ReplicationSlot *slot;
	Oid			database = InvalidOid;
	NameData	plugin;
	ReplicationSlotPersistency persistency = RS_PERSISTENT;
	pid_t		active_pid = 0;

	*why = NULL;
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	slot = SearchNamedReplicationSlot(slot_name, false);
	*exists = slot != NULL;
	if (slot != NULL)
	{
		SpinLockAcquire(&slot->mutex);
		database = slot->data.database;
		plugin = slot->data.plugin;
		persistency = slot->data.persistency;
		active_pid = slot->active_pid;
		SpinLockRelease(&slot->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);

	if (!*exists)
		return true;
	if (!OidIsValid(database))
		*why = pstrdup("It is a physical slot");
	else if (database != MyDatabaseId)
		*why = psprintf("It was created in another database (OID %u)", database);
	else if (strcmp(NameStr(plugin), "pgoutput") != 0)
		*why = psprintf("It decodes with the output plugin \"%s\", not pgoutput",
						NameStr(plugin));
	else if (persistency != RS_PERSISTENT)
		*why = pstrdup("It is a temporary slot");
	else if (active_pid != 0 && active_pid != MyProcPid)
		*why = psprintf("It is in use by process %d", (int) active_pid);
	return *why == NULL;
}

/*
 * The publication or the slot is not es's own: use neither, drop neither
 * (it is somebody's), and wait until it is gone, looking again every few
 * seconds.  We choose waiting over failing the projections: nothing is
 * applied meanwhile, nothing twice either, and once an administrator has
 * dropped or renamed the object, the projector creates its own and goes on
 * by itself, with no projection to resume.  The server log says so (a
 * WARNING, again every few minutes), and so does last_error of every async
 * projection that has not failed (es.projection_status), until then.  In
 * a transaction.
 */
static void
projector_wait(const char *what, const char *why, const char *hint)
{
	TimestampTz now = GetCurrentTimestamp();

	if (waiting_for == NULL || strcmp(waiting_for, what) != 0 ||
		TimestampDifferenceExceeds(waiting_logged_at, now, HOLD_LOG_INTERVAL_MS))
	{
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("es projector: %s is not es's own; the async projections of database \"%s\" wait until it is gone",
						what, get_database_name(MyDatabaseId)),
				 errdetail("%s.", why),
				 errhint("%s", hint)));
		waiting_logged_at = now;
	}
	if (waiting_for != NULL)
		pfree((void *) waiting_for);
	waiting_for = MemoryContextStrdup(TopMemoryContext, what);
	attach_retry_at = TimestampTzPlusMilliseconds(now, 5000);

	state_note_waiting(psprintf("%s is not es's own. %s.", what, why));
}

/* Waiting over (or never begun): forget it, in the log and in the catalog */
static void
projector_wait_done(void)
{
	if (waiting_for != NULL)
	{
		ereport(LOG,
				(errmsg("es projector: %s no longer stands in the way; the async projections go on",
						waiting_for)));
		pfree((void *) waiting_for);
		waiting_for = NULL;
	}
	attach_retry_at = 0;
	state_clear_waiting();
}

static KeptPlan any_async_plan = {
	"SELECT FROM ONLY es.projections p"
	" WHERE p.mode OPERATOR(pg_catalog.=) 'async' LIMIT 1", NULL
};

static KeptPlan lost_list_plan = {
	"SELECT p.name FROM ONLY es.projections p"
	" WHERE p.mode OPERATOR(pg_catalog.=) 'async' AND p.applied_lsn IS NOT NULL"
	" ORDER BY p.name FOR NO KEY UPDATE OF p", NULL
};

/*
 * Live async projections without the slot they were following (a restored
 * dump, a slot dropped by hand or invalidated, a publication that lost
 * es.events) cannot know what they missed: rebuild them (state_reset, as
 * es.rebuild_projection does), here, so that no role's rights come into it
 * but the tables' owners': the projector is a superuser, and
 * es.rebuild_projection runs as the extension's owner.  Paused ones stay
 * paused.  Returns how many.  In a transaction.
 */
static uint64
rebuild_lost(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *names = NIL;
	ListCell   *lc;
	uint64		n;
	uint64		i;

	SPI_connect();
	spi_run(&lost_list_plan, 0, NULL, NULL, NULL, false);
	n = SPI_processed;
	for (i = 0; i < n; i++)
	{
		/* the caller's memory: SPI_finish deletes SPI's */
		MemoryContext old = MemoryContextSwitchTo(cxt);

		names = lappend(names, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		MemoryContextSwitchTo(old);
	}
	foreach(lc, names)
	{
		StateRow	row;

		state_lock(lfirst(lc), false, &row);
		state_reset(&row, false);
	}
	SPI_finish();
	return n;
}

/*
 * Is there anything to attach for, and may we?  Looks, in a transaction,
 * for an async projection, then at the publication and the slot
 * (publication_state, slot_is_ours; projector_wait when either is not
 * es's own).  Sets *pub and *slot_exists.
 */
static AttachResult
attach_look(PubState *pub, bool *slot_exists)
{
	bool		any;
	bool		wait = false;
	int			guc_level;

	guc_level = projector_xact_begin("attaching");
	PushActiveSnapshot(GetTransactionSnapshot());
	any = extension_ready();
	if (any)
	{
		SPI_connect();
		spi_run(&any_async_plan, 0, NULL, NULL, NULL, true);
		any = SPI_processed > 0;
		SPI_finish();
	}
	if (any)
	{
		char	   *why = NULL;

		events_relid = es_relation_oid(ES_EVENTS);
		foreign_relation_logged = false;
		*pub = publication_state(events_relid, &why);
		if (*pub == PUB_FOREIGN)
			projector_wait("the publication \"es_events\"", why,
						   "Drop it (DROP PUBLICATION es_events) or rename it (ALTER PUBLICATION es_events RENAME TO ...): es creates and uses a publication es_events of its own.");
		else if (!slot_is_ours(slot_exists, &why))
			projector_wait(psprintf("the replication slot \"%s\"", slot_name), why,
						   psprintf("Drop it (SELECT pg_drop_replication_slot('%s')): es creates and uses a slot of that name of its own.",
									slot_name));
		else
			projector_wait_done();
		wait = *pub == PUB_FOREIGN || why != NULL;
	}
	PopActiveSnapshot();
	projector_xact_end(guc_level);
	return !any ? ATTACH_NOTHING : wait ? ATTACH_WAIT : ATTACH_OK;
}

/*
 * Drop our slot when it cannot be followed: the server invalidated it
 * (most often max_slot_wal_keep_size reached in a long pause: the WAL is
 * gone; say which cause it was), or the publication does not publish
 * es.events.
 */
static void
attach_drop_unusable(PubState pub, bool slot_exists)
{
	ReplicationSlot *slot = slot_exists ? SearchNamedReplicationSlot(slot_name, true) : NULL;
	const char *cause = slot != NULL ? ReplicationSlotInvalidationCause_compat(slot) : NULL;

	if (cause != NULL)
	{
		ereport(WARNING,
				(errmsg("es projector: the replication slot \"%s\" was invalidated (%s); dropping it",
						slot_name, cause),
				 strcmp(cause, "wal_removed") == 0 ?
				 errdetail("It held more WAL than max_slot_wal_keep_size allows.") :
				 strcmp(cause, "idle_timeout") == 0 ?
				 errdetail("It was unused for longer than idle_replication_slot_timeout allows.") : 0));
		ReplicationSlotDrop(slot_name, true);
	}
	if (pub != PUB_OURS && SearchNamedReplicationSlot(slot_name, true) != NULL)
	{
		ereport(WARNING,
				(errmsg("es projector: the publication es_events does not publish es.events; dropping the replication slot \"%s\"",
						slot_name)));
		ReplicationSlotDrop(slot_name, true);
	}
}

/*
 * No slot: rebuild the live projections that followed one (rebuild_lost),
 * make the publication publish es.events, then create the slot in a
 * transaction of its own (a logical slot cannot be created in a
 * transaction that has written anything).
 */
static void
attach_create(PubState pub)
{
	uint64		rebuilt;
	int			guc_level;

	guc_level = projector_xact_begin("attaching");
	PushActiveSnapshot(GetTransactionSnapshot());
	rebuilt = rebuild_lost();
	if (rebuilt > 0)
		ereport(WARNING,
				(errmsg("es projector: no replication slot \"%s\" for live async projections; rebuilding %llu of them",
						slot_name, (unsigned long long) rebuilt)));
	SPI_connect();
	if (pub == PUB_NONE &&
		SPI_execute("CREATE PUBLICATION es_events FOR TABLE ONLY es.events (global_position)"
					" WITH (publish = 'insert')", false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "es projector: could not create the publication es_events");
	if (pub == PUB_OURS_EMPTY &&
		SPI_execute("ALTER PUBLICATION es_events ADD TABLE ONLY es.events (global_position)",
					false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "es projector: could not add es.events to the publication es_events");
	SPI_finish();
	PopActiveSnapshot();
	projector_xact_end(guc_level);

	guc_level = projector_xact_begin("attaching");
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	if (SPI_execute(psprintf("SELECT pg_catalog.pg_create_logical_replication_slot(%s, 'pgoutput')",
							 quote_literal_cstr(slot_name)), false, 0) != SPI_OK_SELECT)
		elog(ERROR, "es projector: could not create the replication slot %s", slot_name);
	SPI_finish();
	PopActiveSnapshot();
	projector_xact_end(guc_level);
	ereport(LOG, (errmsg("es projector: created replication slot \"%s\"", slot_name)));
}

/*
 * The slot: acquire it, or create it (and the publication first:
 * pgoutput looks it up as of each decoded commit), each only if it is es's
 * own (attach_look).  Live projections without a slot are rebuilt
 * (attach_create); so are they when es's publication lost es.events
 * (pg_dump does not dump an extension table's membership): commits were
 * decoded without their events.
 */
AttachResult
projector_attach(void)
{
	PubState	pub = PUB_NONE;
	bool		slot_exists = false;
	AttachResult result = attach_look(&pub, &slot_exists);

	if (result != ATTACH_OK)
		return result;
	attach_drop_unusable(pub, slot_exists);
	if (SearchNamedReplicationSlot(slot_name, true) == NULL)
		attach_create(pub);
	ReplicationSlotAcquire_compat(slot_name, true);
	/* held now, nobody can replace it: look once more, closing the window */
	if (MyReplicationSlot->data.database != MyDatabaseId ||
		strcmp(NameStr(MyReplicationSlot->data.plugin), "pgoutput") != 0)
	{
		ReplicationSlotRelease();
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("es projector: the replication slot \"%s\" was replaced by one that is not es's own",
						slot_name)));
	}
	decoding_start();
	return ATTACH_OK;
}

/*
 * Nothing to project: give the slot back and drop it, and the publication,
 * when they are es's own (somebody else's are left alone).
 */
void
projector_detach(void)
{
	Oid			nsp;
	Oid			events = InvalidOid;
	PubState	pub;
	char	   *why = NULL;
	bool		slot_exists;
	int			guc_level;

	guc_level = projector_xact_begin("detaching");
	PushActiveSnapshot(GetTransactionSnapshot());
	/* es.events, unless DROP EXTENSION took it (and it from the publication) */
	nsp = get_namespace_oid("es", true);
	if (OidIsValid(nsp))
		events = get_relname_relid("events", nsp);
	pub = publication_state(events, &why);
	if (pub == PUB_OURS || pub == PUB_OURS_EMPTY)
	{
		SPI_connect();
		if (SPI_execute("DROP PUBLICATION es_events", false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "es projector: could not drop the publication es_events");
		SPI_finish();
	}
	PopActiveSnapshot();
	projector_xact_end(guc_level);

	decoding_stop();
	decoded_remove_all();
	if (MyReplicationSlot != NULL)
	{
		ReplicationSlotRelease();
		ReplicationSlotDrop(slot_name, true);
		ereport(LOG, (errmsg("es projector: no async projection left; dropped replication slot \"%s\"",
							 slot_name)));
	}
	else if (slot_is_ours(&slot_exists, &why) && slot_exists)
		ReplicationSlotDrop(slot_name, true);
}
