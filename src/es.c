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
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "nodes/makefuncs.h"
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
