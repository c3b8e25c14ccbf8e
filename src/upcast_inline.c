/*-------------------------------------------------------------------------
 *
 * upcast_inline.c
 *	  What a function step of an upcaster compiles to: the body of a SQL
 *	  upcaster that can stand for a call to it (so that it is inlined), and
 *	  whether a compiled step is inert (it can change no setting, so that a
 *	  read may run it in one user-code section for all its events).
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "nodes/nodeFuncs.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/syscache.h"

#include "es.h"
#include "upcast_int.h"

/*
 * The body of a SQL upcaster, as an expression of its argument $1, when it
 * is one that can stand for a call to it: SQL-language, pre-parsed
 * (RETURN or BEGIN ATOMIC with a single SELECT of one jsonb expression, no
 * FROM, no sub-select, no aggregate), not SECURITY DEFINER, no SET clause,
 * executable by the current user (the owner).  NULL otherwise.  Strictness
 * does not matter: the argument is never NULL (stored data, or a checked
 * step result).
 */
Expr *
upcast_sql_body(Oid funcoid)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcoid));
	Form_pg_proc proc;
	Datum		body;
	bool		isnull;
	Node	   *n;
	Query	   *q;
	TargetEntry *tle;
	Expr	   *result = NULL;

	if (!HeapTupleIsValid(tup))
		return NULL;
	proc = (Form_pg_proc) GETSTRUCT(tup);
	body = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_prosqlbody, &isnull);
	if (isnull || proc->prolang != SQLlanguageId || proc->prosecdef ||
		proc->proretset || proc->prorettype != JSONBOID || proc->pronargs != 1 ||
		proc->proargtypes.values[0] != JSONBOID ||
		!heap_attisnull(tup, Anum_pg_proc_proconfig, NULL) ||
		pg_proc_aclcheck_compat(funcoid, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
	{
		ReleaseSysCache(tup);
		return NULL;
	}
	n = stringToNode(TextDatumGetCString(body));
	ReleaseSysCache(tup);

	/* BEGIN ATOMIC: a list of statement lists; RETURN: one query */
	if (IsA(n, List))
	{
		List	   *stmts = linitial_node(List, castNode(List, n));

		if (list_length(castNode(List, n)) != 1 || list_length(stmts) != 1)
			return NULL;
		n = linitial(stmts);
	}
	if (!IsA(n, Query))
		return NULL;
	q = (Query *) n;
	if (q->commandType != CMD_SELECT || q->hasAggs || q->hasWindowFuncs ||
		q->hasTargetSRFs || q->hasSubLinks || q->cteList != NIL ||
		q->rtable != NIL || q->jointree == NULL || q->jointree->fromlist != NIL ||
		q->jointree->quals != NULL || q->groupClause != NIL ||
		q->groupingSets != NIL || q->havingQual != NULL ||
		q->distinctClause != NIL || q->sortClause != NIL ||
		q->limitOffset != NULL || q->limitCount != NULL ||
		q->setOperations != NULL || list_length(q->targetList) != 1)
		return NULL;
	tle = linitial_node(TargetEntry, q->targetList);
	if (exprType((Node *) tle->expr) == JSONBOID)
		result = tle->expr;
	return result;
}

/* True when a function is not one that upcast_inert accepts */
static bool
upcast_foreign_func(Oid funcoid, void *context)
{
	HeapTuple	tup;
	Form_pg_proc proc;
	bool		foreign;

	/* built in: from the initial catalog, not created since */
	if (funcoid >= FirstGenbkiObjectId)
		return true;
	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcoid));
	if (!HeapTupleIsValid(tup))
		return true;
	proc = (Form_pg_proc) GETSTRUCT(tup);
	/* table_to_xml and its kin run queries on tables, and so user code */
	foreign = proc->provolatile == PROVOLATILE_VOLATILE || proc->prosecdef ||
		!heap_attisnull(tup, Anum_pg_proc_proconfig, NULL) ||
		strstr(NameStr(proc->proname), "_to_xml") != NULL;
	ReleaseSysCache(tup);
	return foreign;
}

/* Walker of upcast_inert: true when the node is not of the accepted kinds */
static bool
upcast_inert_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	switch (nodeTag(node))
	{
		case T_List:
		case T_Const:
		case T_Param:
		case T_FuncExpr:
		case T_OpExpr:
		case T_DistinctExpr:
		case T_NullIfExpr:
		case T_ScalarArrayOpExpr:
		case T_BoolExpr:
		case T_CaseExpr:
		case T_CaseWhen:
		case T_CaseTestExpr:
		case T_CoalesceExpr:
		case T_NullTest:
		case T_BooleanTest:
		case T_RelabelType:
		case T_CoerceViaIO:
		case T_ArrayExpr:
		case T_SQLValueFunction:
			break;
		default:
			return true;
	}
	/*
	 * Values of built-in types only: the input function of a composite or
	 * array type runs the checks of its elements' domains, user code
	 */
	if (!IsA(node, List) && !IsA(node, CaseWhen) && exprType(node) >= FirstGenbkiObjectId)
		return true;
	/* the functions it calls, and the input and output functions it uses */
	if (check_functions_in_node(node, upcast_foreign_func, context))
		return true;
	return expression_tree_walker(node, upcast_inert_walker, context);
}

/*
 * True when an expression cannot change any setting, so that it can run in
 * a batch of user-code calls (es_usercode_begin_batched): made only of
 * plain expression nodes (no sub-query, no domain check, which could run
 * user code) of built-in types, calling only built-in functions that are
 * not volatile (not set_config), not SECURITY DEFINER, without SET clauses
 * and that run no query (table_to_xml and its kin).  An SQL upcaster made
 * of one such expression is inlined into one.
 */
bool
upcast_inert(Expr *expr)
{
	return !upcast_inert_walker((Node *) expr, NULL);
}
