/*-------------------------------------------------------------------------
 *
 * es.c
 *	  Module initialization, GUCs, catalog lookups and the append-only guard.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "storage/lock.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "es.h"

PG_MODULE_MAGIC;

/* Distinguishes our stream locks from user advisory locks (which use 1, 2) */
#define ES_LOCKTAG_FIELD4	0x4553

bool		es_notify = false;

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

void		_PG_init(void);

/* Chain to the shared memory request of the horizon */
static void
es_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	HorizonShmemRequest();
	ProjectorShmemRequest();
}

/* Chain to the shared memory start-up of the horizon */
static void
es_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	HorizonShmemStartup();
	ProjectorShmemStartup();
}

/* Forget cached OIDs when one of them (or everything) is invalidated */
static void
es_relcache_callback(Datum arg, Oid relid)
{
	int			i;

	for (i = 0; i < ES_NRELATIONS; i++)
		if (relid == InvalidOid || relid == es_relation_oids[i])
			memset(es_relation_oids, 0, sizeof(es_relation_oids));
}

/*
 * Module load: GUCs, and with shared_preload_libraries the shared memory of
 * the gap-safe horizon.
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
	MarkGUCPrefixReserved("es");

	if (process_shared_preload_libraries_in_progress)
	{
		prev_shmem_request_hook = shmem_request_hook;
		shmem_request_hook = es_shmem_request;
		prev_shmem_startup_hook = shmem_startup_hook;
		shmem_startup_hook = es_shmem_startup;
	}

	CacheRegisterRelcacheCallback(es_relcache_callback, (Datum) 0);
	HorizonInit();
	UpcastInit();
	LifecycleInit();
	ProjectInit();
	ProjectorInit();
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

/*
 * Start a section of statements es runs itself: whatever the caller's
 * search_path, names resolve in pg_catalog (and pg_temp, last, for nothing
 * es names).  Returns the GUC nest level for es_internal_end.
 */
int
es_internal_begin(void)
{
	int			level = NewGUCNestLevel();

	if (namespace_search_path == NULL ||
		strcmp(namespace_search_path, ES_SEARCH_PATH) != 0)
		(void) set_config_option("search_path", ES_SEARCH_PATH,
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
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
	GetUserIdAndSecContext(&uc->save_userid, &uc->save_sec);
	SetUserIdAndSecContext(userid, uc->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	uc->guc_level = es_internal_begin();
}

/* User code returned: its settings are undone, the caller's identity back */
void
es_usercode_end(EsUserCode *uc)
{
	AtEOXact_GUC(false, uc->guc_level);
	SetUserIdAndSecContext(uc->save_userid, uc->save_sec);
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

	admin_caller = GetUserId();
	PG_TRY();
	{
		result = FunctionCallInvoke(inner);
	}
	PG_FINALLY();
	{
		admin_caller = save;
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

PG_FUNCTION_INFO_V1(es_events_guard);

/*
 * Trigger on es.events: the log is append-only, for every role, superuser
 * included.  The triggers are ENABLE ALWAYS, so session_replication_role
 * does not switch them off.
 */
Datum
es_events_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const char *what;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("es.events_guard() must be called as a trigger")));

	/* es.scavenge removes hidden events, and only those */
	if (lifecycle_scavenging && TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		return PointerGetDatum(trigdata->tg_trigtuple);

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		what = "UPDATE";
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		what = "DELETE";
	else if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		what = "TRUNCATE";
	else
		what = "this operation";

	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("es.events is append-only: %s is not allowed", what),
			 errdetail("Stored events are never changed or removed."),
			 errhint("Append new events with es.append() instead.")));
	PG_RETURN_NULL();
}

/* True when "rv" names es.events */
static bool
guard_is_events(RangeVar *rv)
{
	Oid			nsp = get_namespace_oid("es", true);

	return OidIsValid(nsp) &&
		RangeVarGetRelid(rv, NoLock, true) == get_relname_relid("events", nsp);
}

/* Refuse a DDL command that would switch off the append-only triggers */
static void
guard_refuse_ddl(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("es.events is append-only: %s is not allowed", what),
			 errdetail("The extension keeps es.events, its triggers and its functions as they are.")));
}

PG_FUNCTION_INFO_V1(es_ddl_guard);

/*
 * Event trigger (ddl_command_start): the append-only triggers on es.events
 * cannot be disabled, demoted from ENABLE ALWAYS, or dropped; no other
 * trigger can be created on it; its columns and constraints cannot be
 * altered; the extension's functions cannot be replaced.  The extension's
 * own scripts (CREATE and ALTER EXTENSION) are exempt.
 */
Datum
es_ddl_guard(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;
	ListCell   *lc;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("es.ddl_guard() must be called as an event trigger")));
	if (creating_extension)
		PG_RETURN_NULL();

	trigdata = (EventTriggerData *) fcinfo->context;
	if (IsA(trigdata->parsetree, AlterTableStmt))
	{
		AlterTableStmt *stmt = (AlterTableStmt *) trigdata->parsetree;

		if (!guard_is_events(stmt->relation))
			PG_RETURN_NULL();
		foreach(lc, stmt->cmds)
		{
			AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

			switch (cmd->subtype)
			{
					/* storage and planner settings change no event */
				case AT_SetStatistics:
				case AT_SetOptions:
				case AT_ResetOptions:
				case AT_SetStorage:
				case AT_SetCompression:
				case AT_SetRelOptions:
				case AT_ResetRelOptions:
				case AT_ReplaceRelOptions:
				case AT_ClusterOn:
				case AT_DropCluster:
				case AT_ReplicaIdentity:
				case AT_ChangeOwner:
				case AT_EnableAlwaysTrig:
					break;
				case AT_EnableTrig:
				case AT_EnableReplicaTrig:
				case AT_DisableTrig:
				case AT_EnableTrigAll:
				case AT_DisableTrigAll:
				case AT_EnableTrigUser:
				case AT_DisableTrigUser:
					guard_refuse_ddl("changing its triggers");
					break;
				default:
					/* columns, constraints, rewrites: they could change events */
					guard_refuse_ddl("changing its definition");
					break;
			}
		}
	}
	else if (IsA(trigdata->parsetree, CreateFunctionStmt))
	{
		CreateFunctionStmt *stmt = (CreateFunctionStmt *) trigdata->parsetree;
		char	   *name;
		Oid			nsp;

		/* replacing our functions (the guard among them) is for our scripts */
		nsp = QualifiedNameGetCreationNamespace(stmt->funcname, &name);
		if (stmt->replace && nsp == get_namespace_oid("es", true))
			guard_refuse_ddl(psprintf("replacing function es.%s", name));
	}
	else if (IsA(trigdata->parsetree, RenameStmt))
	{
		RenameStmt *stmt = (RenameStmt *) trigdata->parsetree;

		/* columns, constraints, triggers or the table itself */
		if (stmt->relation != NULL && guard_is_events(stmt->relation))
			guard_refuse_ddl("renaming it or its parts");
	}
	else if (IsA(trigdata->parsetree, AlterObjectSchemaStmt))
	{
		AlterObjectSchemaStmt *stmt = (AlterObjectSchemaStmt *) trigdata->parsetree;

		if (stmt->relation != NULL && guard_is_events(stmt->relation))
			guard_refuse_ddl("moving it to another schema");
	}
	else if (IsA(trigdata->parsetree, CreateTrigStmt))
	{
		CreateTrigStmt *stmt = (CreateTrigStmt *) trigdata->parsetree;

		/* appends insert directly: user triggers would silently not fire */
		if (guard_is_events(stmt->relation))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("triggers on es.events are not supported"),
					 errhint("Use a projection to react to appended events.")));
	}
	else if (IsA(trigdata->parsetree, DropStmt))
	{
		DropStmt   *stmt = (DropStmt *) trigdata->parsetree;

		if (stmt->removeType != OBJECT_TRIGGER)
			PG_RETURN_NULL();
		foreach(lc, stmt->objects)
		{
			List	   *names = list_copy(castNode(List, lfirst(lc)));

			/* the last name is the trigger's, the others the table's */
			names = list_truncate(names, list_length(names) - 1);
			if (guard_is_events(makeRangeVarFromNameList(names)))
				guard_refuse_ddl("dropping its triggers");
		}
	}
	PG_RETURN_NULL();
}
