/*-------------------------------------------------------------------------
 *
 * upcast_inline.c
 *	  Function steps of upcasters: what one compiles to (fn($1) through the
 *	  planner, or the body of a SQL upcaster that can stand for a call to
 *	  it, so that it is inlined), whether the compiled step is inert (it can
 *	  change no setting, so that a read may run it in one user-code section
 *	  for all its events), and its evaluation on an event's data.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "nodes/params.h"
#include "optimizer/optimizer.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "es.h"
#include "upcast_int.h"

/*
 * What one evaluation of fn($1) uses: its parameter and expression context.
 * An upcaster may read events, and so upcast again while it runs: each call
 * depth has its own (and its own ExprState of each step), so that a nested
 * evaluation never writes into the state of the one it runs inside.
 */
typedef struct UpcastLevel
{
	ParamListInfo params;
	ExprContext *econtext;
} UpcastLevel;

static UpcastLevel *upcast_levels = NULL;	/* in upcast_cxt */
static int	upcast_nlevels = 0;
static int	upcast_call_depth = 0;	/* evaluations of fn($1) running now */

/*
 * The body of a SQL upcaster, as an expression of its argument $1, when it
 * is one that can stand for a call to it: SQL-language, pre-parsed
 * (RETURN or BEGIN ATOMIC with a single SELECT of one jsonb expression, no
 * FROM, no sub-select, no aggregate), not SECURITY DEFINER, no SET clause,
 * executable by the current user (the owner).  NULL otherwise.  Strictness
 * does not matter: the argument is never NULL (stored data, or a checked
 * step result).
 */
static Expr *
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
static bool
upcast_inert(Expr *expr)
{
	return !upcast_inert_walker((Node *) expr, NULL);
}

/*
 * Compile fn($1) for a function step at a call depth: the planner inlines
 * SQL functions.  As the function's owner, under the search_path captured
 * when the step was registered: what the inlined body names, and the right
 * to execute it, are the owner's.  The expression is planned once; each depth has its ExprState.
 */
static ExprState *
upcast_compile(UpcastStep *step, int depth)
{
	MemoryContext old = MemoryContextSwitchTo(upcast_cxt);
	EsUserCode	uc;

	if (depth >= step->nexprs)
	{
		int			n = Max(depth + 1, 4);

		step->exprs = step->exprs == NULL ? palloc0(sizeof(ExprState *) * n) :
			repalloc(step->exprs, sizeof(ExprState *) * n);
		memset(step->exprs + step->nexprs, 0, sizeof(ExprState *) * (n - step->nexprs));
		step->nexprs = n;
	}
	es_usercode_begin_path(&uc, step->owner, step->search_path);
	if (step->planned == NULL)
	{
		Param	   *param = makeNode(Param);
		FuncExpr   *call;

		param->paramkind = PARAM_EXTERN;
		param->paramid = 1;
		param->paramtype = JSONBOID;
		param->paramtypmod = -1;
		param->paramcollid = InvalidOid;
		param->location = -1;
		call = makeFuncExpr(step->funcoid, JSONBOID, list_make1(param),
							InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
		step->planned = expression_planner((Expr *) call);

		/*
		 * The planner keeps the call when the body is more volatile than
		 * the function is declared (an IMMUTABLE upcaster that calls the
		 * STABLE jsonb_build_object, say), since it could be folded at plan
		 * time.  Nothing is folded here: the expression runs for each
		 * event, as the call would, so its body can be used all the same.
		 */
		if (IsA(step->planned, FuncExpr) &&
			((FuncExpr *) step->planned)->funcid == step->funcoid)
		{
			Expr	   *body = upcast_sql_body(step->funcoid);

			if (body != NULL)
				step->planned = expression_planner(body);
		}
		step->inert = upcast_inert(step->planned);
	}
	step->exprs[depth] = ExecInitExpr(step->planned, NULL);
	es_usercode_end(&uc);
	MemoryContextSwitchTo(old);
	return step->exprs[depth];
}

/* The parameter and expression context of a call depth */
static UpcastLevel *
upcast_level(int depth)
{
	if (depth >= upcast_nlevels)
	{
		MemoryContext old = MemoryContextSwitchTo(upcast_cxt);
		int			n = Max(depth + 1, 4);
		int			i;

		upcast_levels = upcast_levels == NULL ? palloc(sizeof(UpcastLevel) * n) :
			repalloc(upcast_levels, sizeof(UpcastLevel) * n);
		for (i = upcast_nlevels; i < n; i++)
		{
			upcast_levels[i].params = makeParamList(1);
			upcast_levels[i].econtext = CreateStandaloneExprContext();
			upcast_levels[i].econtext->ecxt_param_list_info = upcast_levels[i].params;
		}
		upcast_nlevels = n;
		MemoryContextSwitchTo(old);
	}
	return &upcast_levels[depth];
}

/* Compile a function step, if it is not yet, so that whether it is inert is known */
void
upcast_prepare(UpcastStep *step)
{
	if (step->planned == NULL)
		(void) upcast_compile(step, upcast_call_depth);
}

/* The cache was reset: the call depths' states went with it */
void
upcast_calls_reset(void)
{
	upcast_levels = NULL;
	upcast_nlevels = 0;
}

/* At the end of a transaction no evaluation is running any more */
void
upcast_calls_end_xact(void)
{
	upcast_call_depth = 0;
}

/* Run a step's function on the data (inside its owner's user-code section) */
Jsonb *
upcast_call(UpcastStep *step, Jsonb *data)
{
	Datum		result;
	bool		isnull;
	Jsonb	   *out;
	int			depth = upcast_call_depth;
	ExprState  *expr;
	UpcastLevel *level;
	ExprContext *econtext;

	/*
	 * This depth's expression and context: the function may read events,
	 * and those are upcast one depth further.  (After an error caught inside
	 * an upcaster the depth stays higher until the transaction ends: deeper
	 * slots are used meanwhile, never one in use.)
	 */
	expr = depth < step->nexprs ? step->exprs[depth] : NULL;
	if (expr == NULL)
		expr = upcast_compile(step, depth);
	level = upcast_level(depth);
	level->params->params[0].value = JsonbPGetDatum(data);
	level->params->params[0].isnull = false;
	level->params->params[0].pflags = PARAM_FLAG_CONST;
	level->params->params[0].ptype = JSONBOID;
	/* a nested call may move upcast_levels: keep only what it points to */
	econtext = level->econtext;
	/*
	 * What the expression allocates, the result included, goes to the
	 * caller's memory (reset by the caller once the event is out), not to a
	 * context of its own that would have to be copied out of and reset.
	 */
	econtext->ecxt_per_tuple_memory = CurrentMemoryContext;

	upcast_call_depth = depth + 1;
	result = ExecEvalExpr(expr, econtext, &isnull);
	upcast_call_depth = depth;
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("upcaster %s returned NULL", step->funcname),
				 errhint("An upcaster must return the event's data as a JSON object.")));
	out = DatumGetJsonbP(result);
	if (!JB_ROOT_IS_OBJECT(out))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("upcaster %s returned %s, not a JSON object",
						step->funcname,
						JB_ROOT_IS_ARRAY(out) && !JB_ROOT_IS_SCALAR(out) ? "an array" : "a scalar"),
				 errhint("An upcaster must return the event's data as a JSON object.")));
	return out;
}
