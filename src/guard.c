/*-------------------------------------------------------------------------
 *
 * guard.c
 *	  The guards: es.events is append-only (a trigger, for every role), and
 *	  es's own objects cannot be altered or dropped one by one (an event
 *	  trigger on DDL): only through the extension.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/index.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_proc.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "parser/parse_type.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "es.h"

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
