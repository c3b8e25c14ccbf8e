/*-------------------------------------------------------------------------
 *
 * es.c
 *	  Module initialization (_PG_init), settings, catalog lookups, the
 *	  sections in which es's statements and user code run, the admin entry
 *	  point, and the shape of es's row types.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_proc.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "parser/parse_func.h"
#include "storage/ipc.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "es.h"

PG_MODULE_MAGIC;

/* Distinguishes our stream locks from user advisory locks (which use 1, 2) */
#define ES_LOCKTAG_FIELD4	0x4553

bool		es_notify = false;
int			es_max_projector_databases = 64;
int			es_max_projection_workers = 2;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Names of the relations in es_relation_oid()'s cache, by EsRelation */
static const char *const es_relation_names[ES_NRELATIONS] = {
	[ES_EVENTS] = "events",
	[ES_EVENTS_PKEY] = "events_pkey",
	[ES_EVENTS_EVENT_ID] = "events_stream_event_id_key",
	[ES_POSITION_SEQ] = "events_global_position_seq",
	[ES_UPCASTER_STEPS] = "upcaster_steps",
	[ES_STREAM_METADATA] = "stream_metadata",
	[ES_STREAM_METADATA_PKEY] = "stream_metadata_pkey",
	[ES_SNAPSHOTS] = "snapshots",
	[ES_EVENTS_POSITION] = "events_global_position_idx",
	[ES_PROJECTIONS] = "projections",
};

/* Their OIDs, looked up once per backend; reset on relcache flush */
static Oid	es_relation_oids[ES_NRELATIONS];

/* The role that called the es admin function in progress (es_admin_entry) */
static Oid	admin_caller = InvalidOid;
/* ... and its search_path, as handlers and upcasters it registers use it */
static char *admin_search_path = NULL;

void		_PG_init(void);

/* Chain to the shared memory requests of the horizon and the projector */
static void
es_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	HorizonShmemRequest();
	ProjectorShmemRequest();
}

/* Chain to the shared memory start-up of the horizon and the projector */
static void
es_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	HorizonShmemStartup();
	ProjectorShmemStartup();
}

/*
 * A relation changed (or everything was flushed): es's cached OIDs, and
 * each module's caches.  One callback for all: PostgreSQL allows a backend
 * a handful of them in all.
 */
static void
es_relcache_callback(Datum arg, Oid relid)
{
	int			i;

	for (i = 0; i < ES_NRELATIONS; i++)
		if (relid == InvalidOid || relid == es_relation_oids[i])
			memset(es_relation_oids, 0, sizeof(es_relation_oids));
	upcast_relcache_callback(arg, relid);
	lifecycle_relcache_callback(arg, relid);
	project_relcache_callback(arg, relid);
}

/* A function changed: compiled upcasters, handlers and reducers */
static void
es_proc_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	upcast_proc_callback(arg, cacheid, hashvalue);
	project_proc_callback(arg, cacheid, hashvalue);
	fold_proc_callback(arg, cacheid, hashvalue);
	pick_proc_callback(arg, cacheid, hashvalue);
}

/*
 * A transaction ends: each module forgets its per-transaction state; the
 * projector's part wakes the projector after an append, and
 * es.wait_for_projection's waiters.
 */
static void
es_xact_callback(XactEvent event, void *arg)
{
	fold_xact_callback(event, arg);
	projector_xact_callback(event, arg);
	lifecycle_xact_callback(event, arg);
	upcast_xact_callback(event, arg);
	horizon_xact_callback(event, arg);
}

/*
 * Module load.  Everything es installs in a server or a backend is here:
 *
 * - settings: es.notify, es.max_projection_workers, es.max_projector_databases
 *   (at server start);
 * - at server start (shared_preload_libraries): the shared memory of the
 *   gap-safe horizon (horizon.c) and of the projector
 *   (projector/launcher.c), and the launcher, a background worker that
 *   starts one projector per database (projector/worker.c), which starts
 *   that database's projection workers (projector/applier.c);
 * - in every backend: one relcache, one function (pg_proc) and one
 *   transaction callback, each calling the modules' own, and the utility
 *   hook that stops a database's projector before DROP DATABASE.
 */
void
_PG_init(void)
{
	DefineCustomBoolVariable("es.notify",
							 "Sends NOTIFY es_events after each append.",
							 "Off by default: NOTIFY serializes committing transactions.",
							 &es_notify,
							 false,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("es.max_projector_databases",
								"Databases whose async projections can be applied at the same time.",
								"Each has one projector process (and one replication slot); shared memory is sized from it at server start.",
								&es_max_projector_databases,
								64, 1, 10000,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);
	DefineCustomIntVariable("es.max_projection_workers",
							"Processes that apply the async projections of a database.",
							"Each applies one projection at a time, so that a slow or stuck handler delays only its own projection while another worker is free.",
							&es_max_projection_workers,
							2, 1, MAX_PROJECTION_WORKERS,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	MarkGUCPrefixReserved("es");

	if (process_shared_preload_libraries_in_progress)
	{
		prev_shmem_request_hook = shmem_request_hook;
		shmem_request_hook = es_shmem_request;
		prev_shmem_startup_hook = shmem_startup_hook;
		shmem_startup_hook = es_shmem_startup;
	}

	if (process_shared_preload_libraries_in_progress)
		launcher_register();

	CacheRegisterRelcacheCallback(es_relcache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(PROCOID, es_proc_callback, (Datum) 0);
	RegisterXactCallback(es_xact_callback, NULL);
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = projector_process_utility;
}

/* The OID of one of the extension's relations, from the backend's cache */
Oid
es_relation_oid(EsRelation which)
{
	if (!OidIsValid(es_relation_oids[which]))
	{
		Oid			nsp = get_namespace_oid("es", true);
		Oid			relid = InvalidOid;

		if (OidIsValid(nsp))
			relid = get_relname_relid(es_relation_names[which], nsp);
		if (!OidIsValid(relid))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("relation es.%s does not exist", es_relation_names[which]),
					 errhint("Is the extension es installed in this database?")));
		es_relation_oids[which] = relid;
	}
	return es_relation_oids[which];
}

/* The OID of the row type es.event */
Oid
es_event_type_oid(void)
{
	Oid			nsp = get_namespace_oid("es", false);
	Oid			typoid = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
										 CStringGetDatum("event"),
										 ObjectIdGetDatum(nsp));

	if (!OidIsValid(typoid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("type es.event does not exist"),
				 errhint("Is the extension es installed in this database?")));
	return typoid;
}

/* The owner of a relation */
Oid
es_rel_owner(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "es: cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * Lock a stream until the end of the transaction: what serializes appends,
 * deletes and tombstones of one stream, and nothing wider (a lock on a hash
 * of the stream id, apart from user advisory locks).
 */
void
es_lock_stream_id(text *stream_id)
{
	LOCKTAG		tag;
	uint64		h;

	h = DatumGetUInt64(hash_any_extended((unsigned char *) VARDATA_ANY(stream_id),
										 VARSIZE_ANY_EXHDR(stream_id), 0));
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (h >> 32), (uint32) h,
						 ES_LOCKTAG_FIELD4);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/* Set search_path for the current GUC nest level, unless it is that already */
static void
es_set_search_path(const char *path)
{
	if (namespace_search_path == NULL || strcmp(namespace_search_path, path) != 0)
		(void) set_config_option("search_path", path,
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * Start a section of statements es runs itself: whatever the caller's
 * search_path, names resolve in pg_catalog (and pg_temp, last, for nothing
 * es names).  Returns the GUC nest level for es_internal_end.
 */
int
es_internal_begin(void)
{
	int			level = NewGUCNestLevel();

	es_set_search_path(ES_SEARCH_PATH);
	return level;
}

/*
 * Start a run of calls of user code that all take one search_path (a
 * projection's handler over a unit of events): a GUC nest level with that
 * path set, so that each call (es_usercode_begin_path, whose own nest
 * level still rolls back whatever the call changes) finds it in place and
 * sets nothing, and name lookups do not recompute the path per call.
 * Between the calls, es may only run C code that runs no statement and
 * resolves no name (anything else is under es_internal_begin, which pins
 * pg_catalog, pg_temp again).  End with es_internal_end.
 */
int
es_usercode_run_begin(const char *search_path)
{
	int			level = NewGUCNestLevel();

	es_set_search_path(search_path ? search_path : ES_SEARCH_PATH);
	return level;
}

/* End a section started by es_internal_begin: every setting goes back */
void
es_internal_end(int level)
{
	AtEOXact_GUC(false, level);
}

/*
 * Run user code (a handler, an upcaster, a reducer) as "userid", under
 * SECURITY_RESTRICTED_OPERATION (no SET ROLE, no temporary objects left in
 * the session), with search_path = pg_catalog, pg_temp, and a GUC nest
 * level that es_usercode_end rolls back whatever the code SET.
 */
void
es_usercode_begin(EsUserCode *uc, Oid userid)
{
	es_usercode_begin_path(uc, userid, NULL);
}

/*
 * The same with the search_path captured when the code was registered
 * (es_capture_search_path; NULL: pg_catalog, pg_temp).  A SET search_path
 * clause of the function itself still applies on top of it, as it does
 * everywhere.
 */
void
es_usercode_begin_path(EsUserCode *uc, Oid userid, const char *search_path)
{
	GetUserIdAndSecContext(&uc->save_userid, &uc->save_sec);
	SetUserIdAndSecContext(userid, uc->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	uc->guc_level = NewGUCNestLevel();
	es_set_search_path(search_path ? search_path : ES_SEARCH_PATH);
}

/*
 * The search_path a handler or an upcaster registered now will run with:
 * the schemas the caller's search_path resolves to now, as names, in order
 * (pg_catalog first unless the path places it), then pg_temp.  Resolved, not
 * copied (unlike SET search_path FROM CURRENT): "$user" would otherwise name
 * the role the code runs as (the function's owner, often a role that never
 * logs in), and a schema of that name, or of any other name of the path
 * that does not exist yet, could later be created by a database owner and
 * searched first; only existing schemas the caller may use are kept.
 * Temporary schemas (the caller's pg_temp, or another session's pg_temp_N
 * named explicitly) are left out: pg_temp comes last, where it is searched
 * only for relations and types that nothing else has, never for functions
 * or operators.
 */
char *
es_capture_search_path(void)
{
	List	   *oids = fetch_search_path(true);
	ListCell   *lc;
	StringInfoData buf;

	initStringInfo(&buf);
	foreach(lc, oids)
	{
		Oid			nsp = lfirst_oid(lc);
		char	   *name;

		if (isAnyTempNamespace(nsp))
			continue;
		name = get_namespace_name(nsp);
		if (name == NULL)
			continue;
		appendStringInfo(&buf, "%s, ", quote_identifier(name));
	}
	appendStringInfoString(&buf, "pg_temp");
	list_free(oids);
	return buf.data;
}

/* User code returned: its settings are undone, the caller's identity back */
void
es_usercode_end(EsUserCode *uc)
{
	AtEOXact_GUC(false, uc->guc_level);
	SetUserIdAndSecContext(uc->save_userid, uc->save_sec);
}

/*
 * A batch of user-code calls that cannot change any setting: upcasters
 * compiled into expressions that call only built-in, non-volatile functions
 * without SET clauses (they can neither SET nor call set_config).  Such a
 * call needs the same identity, restrictions and search_path as any user
 * code, but no GUC nest level of its own: the batch opens one nest level and
 * sets the search_path once (again only when a call needs another one), and
 * es_usercode_batch_end rolls them back.  Between the calls only es's own C
 * code runs (no statement, no name lookup), as the caller: each call
 * switches the identity itself (es_usercode_begin_batched).  An error is
 * cleaned up by the (sub)transaction's abort, as for es_usercode_begin.
 */
void
es_usercode_batch_begin(EsUserCodeBatch *batch)
{
	batch->guc_level = 0;
}

/* Start one call of a batch: run as "userid" with "search_path" */
void
es_usercode_begin_batched(EsUserCodeBatch *batch, EsUserCode *uc, Oid userid,
						  const char *search_path)
{
	if (batch->guc_level == 0)
		batch->guc_level = NewGUCNestLevel();
	/* only when it differs (a call of another step, or the first) */
	es_set_search_path(search_path ? search_path : ES_SEARCH_PATH);
	GetUserIdAndSecContext(&uc->save_userid, &uc->save_sec);
	SetUserIdAndSecContext(userid, uc->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	uc->guc_level = batch->guc_level;
}

/* One call of a batch returned: the caller's identity back */
void
es_usercode_end_batched(EsUserCode *uc)
{
	SetUserIdAndSecContext(uc->save_userid, uc->save_sec);
}

/* The batch is over: the search_path (and anything else) goes back */
void
es_usercode_batch_end(EsUserCodeBatch *batch)
{
	if (batch->guc_level > 0)
		AtEOXact_GUC(false, batch->guc_level);
	batch->guc_level = 0;
}

/*
 * es's own statements on one of its tables that the caller may not read or
 * write (the registries, the lifecycle rows, the log for es.scavenge): as
 * the table's owner, under the same restrictions as user code; end with
 * es_usercode_end.
 */
void
es_as_owner_begin(EsUserCode *uc, Oid relid)
{
	es_usercode_begin(uc, es_rel_owner(relid));
}

/* The admin function with its own name prefixed by "_", in schema es */
static Oid
admin_impl_oid(Oid fn_oid)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn_oid));
	Form_pg_proc proc;
	List	   *name;
	Oid			impl;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "es: cache lookup failed for function %u", fn_oid);
	proc = (Form_pg_proc) GETSTRUCT(tup);
	name = list_make2(makeString("es"),
					  makeString(psprintf("_%s", NameStr(proc->proname))));
	impl = LookupFuncName(name, proc->pronargs, proc->proargtypes.values, false);
	ReleaseSysCache(tup);
	return impl;
}

PG_FUNCTION_INFO_V1(es_admin_entry);

/*
 * The SQL entry point of the admin functions that check the caller's own
 * rights on objects named in the call (es.create_projection,
 * es.rebuild_projection, es.register_upcaster).  It runs as the caller,
 * notes who that is for es._caller(), and calls the SECURITY DEFINER
 * implementation es._<name> with the same arguments (directly: nobody
 * else has EXECUTE on it).
 */
Datum
es_admin_entry(PG_FUNCTION_ARGS)
{
	FmgrInfo   *impl = fcinfo->flinfo->fn_extra;
	LOCAL_FCINFO(inner, FUNC_MAX_ARGS);
	Oid			save = admin_caller;
	char	   *save_path = admin_search_path;
	Datum		result = (Datum) 0;
	int			i;

	if (impl == NULL)
	{
		impl = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(FmgrInfo));
		fmgr_info_cxt(admin_impl_oid(fcinfo->flinfo->fn_oid), impl,
					  fcinfo->flinfo->fn_mcxt);
		fcinfo->flinfo->fn_extra = impl;
	}
	InitFunctionCallInfoData(*inner, impl, fcinfo->nargs, fcinfo->fncollation,
							 NULL, NULL);
	for (i = 0; i < fcinfo->nargs; i++)
		inner->args[i] = fcinfo->args[i];

	admin_search_path = es_capture_search_path();
	admin_caller = GetUserId();
	PG_TRY();
	{
		result = FunctionCallInvoke(inner);
	}
	PG_FINALLY();
	{
		admin_caller = save;
		admin_search_path = save_path;
	}
	PG_END_TRY();
	fcinfo->isnull = inner->isnull;
	return result;
}

PG_FUNCTION_INFO_V1(es_caller);

/*
 * es._caller(): the role that called the es admin function in progress,
 * for its checks of that role's rights on the objects it names.
 */
Datum
es_caller(PG_FUNCTION_ARGS)
{
	if (!OidIsValid(admin_caller))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("es._caller() is only available inside es admin functions")));
	PG_RETURN_OID(admin_caller);
}

PG_FUNCTION_INFO_V1(es_caller_search_path);

/*
 * es._caller_search_path(): the search_path of the caller of the es admin
 * function in progress, pg_temp last (es_capture_search_path): what the
 * handler or upcaster it registers will run with.  The default of the
 * registries' search_path columns: outside an admin function (rows that a
 * restore of a dump from before 0.5.0 loads without the column) it is the
 * path those registrations ran with, pg_catalog, pg_temp.
 */
Datum
es_caller_search_path(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(admin_search_path ? admin_search_path
									 : ES_SEARCH_PATH));
}

PG_FUNCTION_INFO_V1(es_registry_changed);

/*
 * Statement trigger on the tables that backends cache (the upcaster
 * registry, the stream lifecycle rows): tell every backend, and our own at
 * the next command, that the table changed.
 */
Datum
es_registry_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("es.registry_changed() must be called as a trigger")));
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);
}

/*
 * ---------------------------------------------------------------------------
 * The shape of es's row types
 * ---------------------------------------------------------------------------
 */

/* One attribute of es.event or es.new_event, as the C code uses them */
typedef struct EsRowAttr
{
	const char *name;
	Oid			type;
} EsRowAttr;

static const EsRowAttr es_event_attrs[] = {
	{"global_position", INT8OID},
	{"stream_id", TEXTOID},
	{"stream_version", INT8OID},
	{"event_id", UUIDOID},
	{"event_type", TEXTOID},
	{"schema_version", INT4OID},
	{"data", JSONBOID},
	{"metadata", JSONBOID},
	{"recorded_at", TIMESTAMPTZOID},
};

StaticAssertDecl(lengthof(es_event_attrs) == READ_NATTS,
				 "es.event and READ_NATTS disagree");

static const EsRowAttr es_new_event_attrs[] = {
	{"event_type", TEXTOID},
	{"data", JSONBOID},
	{"metadata", JSONBOID},
	{"event_id", UUIDOID},
	{"schema_version", INT4OID},
};

pg_noreturn static void row_type_error(const char *typname, char *detail);

/* Report a row type that is not as es's scripts define it */
static void
row_type_error(const char *typname, char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
			 errmsg("type %s does not have the definition extension es expects", typname),
			 errdetail_internal("%s", detail),
			 errhint("Undo the change to the type, or reinstall extension es (pg_dump the database and restore it into a new one: the events are kept).")));
}

/*
 * Check that "desc" has exactly the attributes of es.event or es.new_event
 * (names, types, order; no dropped attribute): the C code builds and takes
 * apart these rows by position, so a type altered outside the extension's
 * scripts is an error, not a crash.  Cheap enough for every call.
 */
void
es_check_row_type(TupleDesc desc, EsRowType which)
{
	const EsRowAttr *want;
	int			nwant;
	const char *typname;
	int			i;

	if (which == ES_ROW_EVENT)
	{
		want = es_event_attrs;
		nwant = lengthof(es_event_attrs);
		typname = "es.event";
	}
	else
	{
		want = es_new_event_attrs;
		nwant = lengthof(es_new_event_attrs);
		typname = "es.new_event";
	}

	for (i = 0; i < Max(desc->natts, nwant); i++)
	{
		Form_pg_attribute att;

		if (i >= desc->natts)
			row_type_error(typname,
						   psprintf("Attribute %d \"%s\" (%s) is missing: the type has %d attributes, %d expected.",
									i + 1, want[i].name, format_type_be(want[i].type),
									desc->natts, nwant));
		att = TupleDescAttr(desc, i);
		if (att->attisdropped)
			row_type_error(typname,
						   psprintf("Attribute %d was dropped from the type.", i + 1));
		if (i >= nwant)
			row_type_error(typname,
						   psprintf("Attribute %d \"%s\" (%s) is not expected: the type has %d attributes, %d expected.",
									i + 1, NameStr(att->attname),
									format_type_with_typemod(att->atttypid, att->atttypmod),
									desc->natts, nwant));
		if (att->atttypid != want[i].type || att->atttypmod != -1 ||
			strcmp(NameStr(att->attname), want[i].name) != 0)
			row_type_error(typname,
						   psprintf("Attribute %d is \"%s\" (%s), \"%s\" (%s) expected.",
									i + 1, NameStr(att->attname),
									format_type_with_typemod(att->atttypid, att->atttypmod),
									want[i].name, format_type_be(want[i].type)));
	}
}
