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

#include "catalog/dependency.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_namespace.h"
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
#include "parser/parse_type.h"
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
int			es_max_projector_databases = 64;

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
 * Module load: GUCs; with shared_preload_libraries the shared memory of the
 * gap-safe horizon and of the projector (whose launcher ProjectorInit
 * registers); every module's callbacks.
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

/*
 * ---------------------------------------------------------------------------
 * The DDL guard
 *
 * es_ddl_guard refuses DDL that alters, renames, moves or drops an object of
 * the extension (its tables, views, sequence, types and functions, the
 * indexes, triggers and rules on its relations), makes a child table or a
 * partition of one of its relations, or changes the extension's members;
 * storage and planner settings stay allowed.  Only the extension's own
 * scripts (CREATE and ALTER EXTENSION es) are exempt.
 * ---------------------------------------------------------------------------
 */

/* The extension es and its table es.events, looked up at each guard call */
static Oid	guard_extension = InvalidOid;
static Oid	guard_events = InvalidOid;

#define GUARD_DETAIL \
	"Only the extension's own scripts change its objects: its C code relies on their definitions."

/* Refuse a DDL command on es.events itself (its triggers, definition, children) */
static void
guard_refuse_ddl(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("es.events is append-only: %s is not allowed", what),
			 errdetail("The extension keeps es.events, its triggers and its functions as they are.")));
}

/*
 * Refuse a DDL command on an object of es: in the append-only wording for
 * es.events itself, in the extension's for the others.
 */
static void
guard_refuse(Oid classid, Oid objid, const char *what)
{
	if (classid == RelationRelationId && objid == guard_events)
		guard_refuse_ddl(what);
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s belongs to extension es: %s is not allowed",
					getObjectDescriptionOids(classid, objid), what),
			 errdetail(GUARD_DETAIL)));
}

/* True when the object is a member of extension es */
static bool
guard_is_member(Oid classid, Oid objid)
{
	return OidIsValid(objid) &&
		getExtensionOfObject(classid, objid) == guard_extension;
}

/*
 * True when the relation is one of es's: a member of the extension (table,
 * view, sequence), an index on one, or the relation of one of its
 * composite types.
 */
static bool
guard_relation_is_es(Oid relid)
{
	HeapTuple	tup;
	char		relkind;
	Oid			reltype;

	if (!OidIsValid(relid))
		return false;
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		return false;
	relkind = ((Form_pg_class) GETSTRUCT(tup))->relkind;
	reltype = ((Form_pg_class) GETSTRUCT(tup))->reltype;
	ReleaseSysCache(tup);

	if (relkind == RELKIND_INDEX || relkind == RELKIND_PARTITIONED_INDEX)
		return guard_relation_is_es(IndexGetRelation(relid, true));
	if (relkind == RELKIND_COMPOSITE_TYPE)
		return guard_is_member(TypeRelationId, reltype);
	return guard_is_member(RelationRelationId, relid);
}

/* Refuse "what" on a relation of es (InvalidOid: nothing to refuse) */
static void
guard_relation(Oid relid, const char *what)
{
	if (guard_relation_is_es(relid))
		guard_refuse(RelationRelationId, relid, what);
}

/* Refuse "what" on the relation "rv" names, if it is one of es's */
static void
guard_rangevar(RangeVar *rv, const char *what)
{
	if (rv != NULL)
		guard_relation(RangeVarGetRelid(rv, NoLock, true), what);
}

/*
 * Refuse "what" on the object "object" of type "objtype" names (as a
 * DropStmt, RenameStmt or AlterObjectSchemaStmt gives it), if it belongs to
 * es.  Names that resolve to nothing are left to the command itself.
 */
static void
guard_object(ObjectType objtype, Node *object, const char *what)
{
	switch (objtype)
	{
		case OBJECT_TABLE:
		case OBJECT_INDEX:
		case OBJECT_SEQUENCE:
		case OBJECT_VIEW:
		case OBJECT_MATVIEW:
		case OBJECT_FOREIGN_TABLE:
			guard_rangevar(makeRangeVarFromNameList(castNode(List, object)), what);
			break;
		case OBJECT_TYPE:
		case OBJECT_DOMAIN:
		case OBJECT_DOMCONSTRAINT:
			{
				TypeName   *name;
				Oid			typid;
				Oid			typrelid;

				if (IsA(object, TypeName))
					name = (TypeName *) object;
				else
					name = makeTypeNameFromNameList(castNode(List, object));
				typid = LookupTypeNameOid(NULL, name, true);
				if (guard_is_member(TypeRelationId, typid))
					guard_refuse(TypeRelationId, typid, what);
				/* the row type of one of our tables */
				typrelid = OidIsValid(typid) ? get_typ_typrelid(typid) : InvalidOid;
				guard_relation(typrelid, what);
			}
			break;
		case OBJECT_FUNCTION:
		case OBJECT_PROCEDURE:
		case OBJECT_ROUTINE:
		case OBJECT_AGGREGATE:
			{
				Oid			funcid;

				funcid = LookupFuncWithArgs(objtype,
											castNode(ObjectWithArgs, object), true);
				if (guard_is_member(ProcedureRelationId, funcid))
					guard_refuse(ProcedureRelationId, funcid, what);
			}
			break;
		case OBJECT_TRIGGER:
		case OBJECT_RULE:
			{
				List	   *names = list_copy(castNode(List, object));

				/* the last name is the trigger's or rule's, the others the table's */
				names = list_truncate(names, list_length(names) - 1);
				guard_rangevar(makeRangeVarFromNameList(names), what);
			}
			break;
		default:
			break;
	}
}

/*
 * ALTER TABLE (and ALTER INDEX, SEQUENCE, VIEW, TYPE, ... which share it):
 * on a relation of es only storage and planner settings; on any table, no
 * INHERIT or ATTACH PARTITION of one of ours.
 */
static void
guard_alter_table(AlterTableStmt *stmt)
{
	Oid			relid = RangeVarGetRelid(stmt->relation, NoLock, true);
	bool		ours = guard_relation_is_es(relid);
	bool		view = ours && get_rel_relkind(relid) == RELKIND_VIEW;
	ListCell   *lc;

	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

		/* another table becoming a child or a partition of one of ours */
		if (cmd->subtype == AT_AddInherit)
			guard_rangevar(castNode(RangeVar, cmd->def), "making a child table of it");
		else if (cmd->subtype == AT_AttachPartition)
			guard_rangevar(castNode(PartitionCmd, cmd->def)->name,
						   "attaching it as a partition");
		if (!ours)
			continue;

		switch (cmd->subtype)
		{
				/* storage and planner settings change no event */
			case AT_SetStatistics:
			case AT_SetOptions:
			case AT_ResetOptions:
			case AT_SetStorage:
			case AT_SetCompression:
			case AT_SetTableSpace:
			case AT_ClusterOn:
			case AT_DropCluster:
			case AT_ReplicaIdentity:
			case AT_ChangeOwner:
			case AT_EnableAlwaysTrig:
				break;
			case AT_SetRelOptions:
			case AT_ResetRelOptions:
			case AT_ReplaceRelOptions:
				/* those of a view (security_barrier, ...) are no storage */
				if (view)
					guard_refuse(RelationRelationId, relid, "changing its definition");
				break;
			case AT_EnableTrig:
			case AT_EnableReplicaTrig:
			case AT_DisableTrig:
			case AT_EnableTrigAll:
			case AT_DisableTrigAll:
			case AT_EnableTrigUser:
			case AT_DisableTrigUser:
				guard_refuse(RelationRelationId, relid, "changing its triggers");
				break;
			default:
				/* columns, attributes, constraints, rewrites, inheritance */
				guard_refuse(RelationRelationId, relid, "changing its definition");
				break;
		}
	}
}

/* RENAME of an object of es, of its columns, attributes, triggers, ... */
static void
guard_rename(RenameStmt *stmt)
{
	const char *what = "renaming it or its parts";

	if (stmt->relation != NULL)
		guard_rangevar(stmt->relation, what);
	else if (stmt->renameType == OBJECT_SCHEMA)
	{
		Oid			nsp = get_namespace_oid(stmt->subname, true);

		/* the C code finds everything in schema es */
		if (OidIsValid(nsp) && nsp == get_namespace_oid("es", true))
			guard_refuse(NamespaceRelationId, nsp, what);
	}
	else
		guard_object(stmt->renameType, stmt->object, what);
}

/* DROP of an object of es, or of an index, trigger or rule on one */
static void
guard_drop(DropStmt *stmt)
{
	const char *what;
	ListCell   *lc;

	if (stmt->removeType == OBJECT_TRIGGER)
		what = "dropping its triggers";
	else if (stmt->removeType == OBJECT_RULE)
		what = "dropping its rules";
	else
		what = "dropping it";
	foreach(lc, stmt->objects)
		guard_object(stmt->removeType, lfirst(lc), what);
}

/*
 * CREATE TABLE ... INHERITS or PARTITION OF one of our tables: reads of
 * es.events would show the child's rows, and deletes through it reach them.
 */
static void
guard_create_table(CreateStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->inhRelations)
		guard_rangevar(lfirst_node(RangeVar, lc), "making a child table of it");
}

/* CREATE TRIGGER (or CREATE OR REPLACE TRIGGER) on a relation of es */
static void
guard_create_trigger(CreateTrigStmt *stmt)
{
	Oid			relid = RangeVarGetRelid(stmt->relation, NoLock, true);

	/* appends insert directly: user triggers would silently not fire */
	if (OidIsValid(relid) && relid == guard_events)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("triggers on es.events are not supported"),
				 errhint("Use a projection to react to appended events.")));
	guard_relation(relid, "adding triggers to it");
}

/* Check one DDL command (or one element of a CREATE SCHEMA) */
static void
guard_check(Node *parsetree)
{
	ListCell   *lc;

	switch (nodeTag(parsetree))
	{
		case T_AlterTableStmt:
			guard_alter_table((AlterTableStmt *) parsetree);
			break;
		case T_AlterSeqStmt:
			/* RESTART, INCREMENT, OWNED BY, ...: positions come from it */
			guard_rangevar(((AlterSeqStmt *) parsetree)->sequence,
						   "changing its definition");
			break;
		case T_AlterTypeStmt:
			guard_object(OBJECT_TYPE, (Node *) ((AlterTypeStmt *) parsetree)->typeName,
						 "changing its definition");
			break;
		case T_AlterEnumStmt:
			guard_object(OBJECT_TYPE, (Node *) ((AlterEnumStmt *) parsetree)->typeName,
						 "changing its definition");
			break;
		case T_AlterDomainStmt:
			guard_object(OBJECT_DOMAIN, (Node *) ((AlterDomainStmt *) parsetree)->typeName,
						 "changing its definition");
			break;
		case T_AlterFunctionStmt:
			{
				AlterFunctionStmt *stmt = (AlterFunctionStmt *) parsetree;

				guard_object(stmt->objtype, (Node *) stmt->func,
							 "changing its definition");
			}
			break;
		case T_RenameStmt:
			guard_rename((RenameStmt *) parsetree);
			break;
		case T_AlterObjectSchemaStmt:
			{
				AlterObjectSchemaStmt *stmt = (AlterObjectSchemaStmt *) parsetree;

				if (stmt->relation != NULL)
					guard_rangevar(stmt->relation, "moving it to another schema");
				else
					guard_object(stmt->objectType, stmt->object,
								 "moving it to another schema");
			}
			break;
		case T_AlterObjectDependsStmt:
			{
				AlterObjectDependsStmt *stmt = (AlterObjectDependsStmt *) parsetree;

				/* dropping that extension would drop the object */
				if (stmt->relation != NULL)
					guard_rangevar(stmt->relation, "changing its dependencies");
				else
					guard_object(stmt->objectType, stmt->object,
								 "changing its dependencies");
			}
			break;
		case T_DropStmt:
			guard_drop((DropStmt *) parsetree);
			break;
		case T_CreateStmt:
			guard_create_table((CreateStmt *) parsetree);
			break;
		case T_CreateForeignTableStmt:
			guard_create_table(&((CreateForeignTableStmt *) parsetree)->base);
			break;
		case T_CreateSchemaStmt:
			/* its elements run without event triggers of their own */
			foreach(lc, ((CreateSchemaStmt *) parsetree)->schemaElts)
				guard_check(lfirst(lc));
			break;
		case T_IndexStmt:
			/* appends maintain every index: a unique one could refuse them */
			guard_rangevar(((IndexStmt *) parsetree)->relation, "adding indexes to it");
			break;
		case T_RuleStmt:
			guard_rangevar(((RuleStmt *) parsetree)->relation, "adding rules to it");
			break;
		case T_ViewStmt:
			{
				ViewStmt   *stmt = (ViewStmt *) parsetree;

				if (stmt->replace)
					guard_relation(get_relname_relid(stmt->view->relname,
													 RangeVarGetCreationNamespace(stmt->view)),
								   "replacing it");
			}
			break;
		case T_CreateTrigStmt:
			guard_create_trigger((CreateTrigStmt *) parsetree);
			break;
		case T_CreateFunctionStmt:
			{
				CreateFunctionStmt *stmt = (CreateFunctionStmt *) parsetree;
				char	   *name;
				Oid			nsp;

				/* replacing our functions (the guard among them) is for our scripts */
				nsp = QualifiedNameGetCreationNamespace(stmt->funcname, &name);
				if (stmt->replace && nsp == get_namespace_oid("es", true))
					guard_refuse_ddl(psprintf("replacing function es.%s", name));
			}
			break;
		case T_AlterExtensionContentsStmt:
			/* ALTER EXTENSION es DROP ... would leave an object unguarded */
			if (strcmp(((AlterExtensionContentsStmt *) parsetree)->extname, "es") == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("adding or removing members of extension es is not allowed"),
						 errdetail(GUARD_DETAIL)));
			break;
		default:
			break;
	}
}

PG_FUNCTION_INFO_V1(es_ddl_guard);

/*
 * Event trigger (ddl_command_start): the append-only triggers on es.events
 * cannot be disabled, demoted from ENABLE ALWAYS, or dropped; no other
 * trigger can be created on it; no table can inherit from it; and no object
 * of the extension (table, view, sequence, type, function, or an index,
 * trigger or rule on its relations) can be altered, renamed, moved,
 * replaced or dropped, storage and planner settings excepted.  The
 * extension's own scripts (CREATE and ALTER EXTENSION es) are exempt;
 * DROP EXTENSION es is not refused.
 */
Datum
es_ddl_guard(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("es.ddl_guard() must be called as an event trigger")));

	guard_extension = get_extension_oid("es", true);
	if (!OidIsValid(guard_extension) ||
		(creating_extension && CurrentExtensionObject == guard_extension))
		PG_RETURN_NULL();
	guard_events = get_relname_relid("events", get_namespace_oid("es", true));

	trigdata = (EventTriggerData *) fcinfo->context;
	guard_check(trigdata->parsetree);
	PG_RETURN_NULL();
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
