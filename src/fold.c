/*-------------------------------------------------------------------------
 *
 * fold.c
 *	  es.fold: rebuild an aggregate's state from its latest snapshot and the
 *	  (upcast) events after it.
 *
 * The reducer, reducer(state jsonb, e es.event) RETURNS jsonb, is compiled
 * into an expression reducer($1, $2) through the planner, so a SQL-language
 * reducer made of one expression is inlined, and kept for the next folds
 * (see fold_acquire).  Snapshots
 * are read and written through es.load_snapshot and es.save_snapshot, which
 * own the validation; fold saves one itself when the snapshot type has an
 * interval (es.set_snapshot_interval) and it folded at least that many
 * events.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/params.h"
#include "optimizer/optimizer.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "es.h"

/*
 * A compiled reducer.  A fold holds one for its whole run ("in_use"): two
 * folds running at once (a reducer that folds) never share an expression,
 * its context or its parameters.  Up to FOLD_CACHE_SIZE compiled reducers
 * are kept (fold_cache, each in its own context under CacheMemoryContext)
 * for the next folds; when all are in use a fold compiles its own, in its
 * own memory.  A change of any function only marks them stale
 * (fold_generation moves on): a reducer is never freed while a fold uses
 * it, but dropped when that fold ends.
 */
typedef struct FoldReducer
{
	Oid			funcoid;
	Oid			event_type;		/* the OID of es.event */
	MemoryContext cxt;			/* holds all of this reducer */
	uint64		generation;		/* fold_generation when it was compiled */
	bool		in_use;			/* a fold is running it */
	int			slot;			/* its index in fold_cache, or -1 */
	ExprState  *expr;			/* reducer($1, $2) */
	ExprContext *econtext;
	ParamListInfo params;
} FoldReducer;

#define FOLD_CACHE_SIZE 8
static FoldReducer *fold_cache[FOLD_CACHE_SIZE];
static uint64 fold_generation = 0;

/* The state of one fold */
typedef struct FoldState
{
	FoldReducer *reducer;
	TupleDesc	event_desc;		/* es.event */
	MemoryContext state_cxt;	/* holds the current state */
	Jsonb	   *state;
	int64		version;		/* of the last event folded */
	int64		folded;
	const char *stream_id;
	Oid			userid;			/* the caller: the reducer runs as that role */
} FoldState;

/*
 * A function changed: compiled reducers may be stale.  Nothing is freed
 * here: a fold may be running the compiled reducer right now (the reducer
 * itself may have caused the invalidation).
 */
void
fold_proc_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	fold_generation++;
}

/*
 * At the end of a transaction no fold runs any more: a fold that failed
 * left its cached reducer marked in use.  (A fold that failed inside a
 * subtransaction leaves it so until then: other folds use other slots.)
 */
void
fold_xact_callback(XactEvent event, void *arg)
{
	int			i;

	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		for (i = 0; i < FOLD_CACHE_SIZE; i++)
			if (fold_cache[i] != NULL)
				fold_cache[i]->in_use = false;
}

/* Free a reducer that no fold uses */
static void
fold_free(FoldReducer *r)
{
	if (r->slot >= 0)
		fold_cache[r->slot] = NULL;
	MemoryContextDelete(r->cxt);
}

/*
 * The compiled reducer($1, $2) of a fold that starts: a cached one when one
 * is current and free, else a new one.  Checks the reducer's signature.
 * Release it with fold_release.
 */
static FoldReducer *
fold_acquire(Oid funcoid)
{
	HeapTuple	tup;
	Form_pg_proc proc;
	Oid			event_type = es_event_type_oid();
	bool		ok;
	MemoryContext cxt;
	MemoryContext old;
	FoldReducer *r;
	Param	   *state_param;
	Param	   *event_param;
	FuncExpr   *call;
	Expr	   *planned;
	EsUserCode	uc;
	uint64		generation;
	int			slot = -1;
	int			i;

	/* a function that changed meanwhile counts */
	AcceptInvalidationMessages();
	for (i = 0; i < FOLD_CACHE_SIZE; i++)
	{
		r = fold_cache[i];
		if (r == NULL || r->in_use)
			continue;
		if (r->generation == fold_generation &&
			r->funcoid == funcoid && r->event_type == event_type)
		{
			r->in_use = true;
			return r;
		}
		/* stale: drop it; current but another reducer: a slot to reuse */
		if (r->generation != fold_generation)
			fold_free(r);
	}

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcoid));
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("reducer function %u does not exist", funcoid)));
	proc = (Form_pg_proc) GETSTRUCT(tup);
	ok = proc->prokind == PROKIND_FUNCTION && proc->pronargs == 2 &&
		proc->proargtypes.values[0] == JSONBOID &&
		proc->proargtypes.values[1] == event_type &&
		proc->prorettype == JSONBOID && !proc->proretset;
	ReleaseSysCache(tup);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("reducer %s must be a function (state jsonb, e es.event) RETURNS jsonb",
						format_procedure(funcoid))));

	/*
	 * Compiled in the caller's memory, so that an error frees it; moved to
	 * the cache after.  An invalidation while compiling leaves it stale.
	 */
	generation = fold_generation;
	cxt = AllocSetContextCreate(CurrentMemoryContext, "es fold reducer",
								ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	r = palloc0(sizeof(FoldReducer));
	r->funcoid = funcoid;
	r->event_type = event_type;
	r->cxt = cxt;
	r->generation = generation;
	r->slot = -1;

	state_param = makeNode(Param);
	state_param->paramkind = PARAM_EXTERN;
	state_param->paramid = 1;
	state_param->paramtype = JSONBOID;
	state_param->paramtypmod = -1;
	state_param->location = -1;
	event_param = copyObject(state_param);
	event_param->paramid = 2;
	event_param->paramtype = event_type;

	call = makeFuncExpr(funcoid, JSONBOID, list_make2(state_param, event_param),
						InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
	/* planning may run the reducer's immutable parts: as the caller, restricted */
	es_usercode_begin(&uc, GetUserId());
	planned = expression_planner((Expr *) call);
	r->expr = ExecInitExpr(planned, NULL);
	es_usercode_end(&uc);
	r->econtext = CreateStandaloneExprContext();
	r->params = makeParamList(2);
	r->params->numParams = 2;
	r->econtext->ecxt_param_list_info = r->params;
	MemoryContextSwitchTo(old);

	r->in_use = true;
	/* keep it for the next folds: in a free slot, else instead of an idle one */
	for (i = 0; i < FOLD_CACHE_SIZE && slot < 0; i++)
		if (fold_cache[i] == NULL)
			slot = i;
	for (i = 0; i < FOLD_CACHE_SIZE && slot < 0; i++)
		if (!fold_cache[i]->in_use)
		{
			fold_free(fold_cache[i]);
			slot = i;
		}
	if (slot >= 0)
	{
		MemoryContextSetParent(cxt, CacheMemoryContext);
		fold_cache[slot] = r;
		r->slot = slot;
	}
	return r;
}

/* A fold is done with its reducer (not called on error: see fold_xact_callback) */
static void
fold_release(FoldReducer *r)
{
	r->in_use = false;
	if (r->slot < 0 || r->generation != fold_generation)
		fold_free(r);
}

/* Error context: name the event being folded */
static void
fold_error_callback(void *arg)
{
	FoldState  *f = arg;

	errcontext("folding stream \"%s\" at version " INT64_FORMAT " with reducer %s",
			   f->stream_id, f->version, format_procedure(f->reducer->funcoid));
}

/* Fold one (upcast) event into the state */
static void
fold_event(HeapTuple tuple, TupleDesc desc, void *arg)
{
	FoldState  *f = arg;
	FoldReducer *r = f->reducer;
	Datum		values[READ_NATTS];
	bool		nulls[READ_NATTS];
	HeapTuple	event;
	Datum		result;
	bool		isnull;
	MemoryContext old;
	EsUserCode	uc;

	heap_deform_tuple(tuple, desc, values, nulls);
	f->version = DatumGetInt64(values[READ_ATT_STREAM_VERSION - 1]);
	event = heap_form_tuple(f->event_desc, values, nulls);

	r->params->params[0].value = JsonbPGetDatum(f->state);
	r->params->params[0].isnull = false;
	r->params->params[0].pflags = PARAM_FLAG_CONST;
	r->params->params[0].ptype = JSONBOID;
	r->params->params[1].value = HeapTupleGetDatum(event);
	r->params->params[1].isnull = false;
	r->params->params[1].pflags = PARAM_FLAG_CONST;
	r->params->params[1].ptype = r->event_type;

	es_usercode_begin(&uc, f->userid);
	result = ExecEvalExpr(r->expr, r->econtext, &isnull);
	es_usercode_end(&uc);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("reducer %s returned NULL", format_procedure(r->funcoid)),
				 errhint("A reducer returns the new state as jsonb.")));

	/*
	 * Keep the new state, then free the old one: the result may be the old
	 * state itself (a reducer that returns its argument).  Whatever else the
	 * event cost is in read_stream_each's per-event memory.
	 */
	old = MemoryContextSwitchTo(f->state_cxt);
	{
		Jsonb	   *prev = f->state;

		f->state = DatumGetJsonbPCopy(result);
		pfree(prev);
	}
	MemoryContextSwitchTo(old);
	ResetExprContext(r->econtext);
	heap_freetuple(event);
	f->folded++;
}

/* Run a query through SPI with the given arguments; returns SPI_processed */
static uint64
fold_spi(const char *sql, int nargs, Oid *types, Datum *values)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, NULL, false, 0);

	if (rc < 0)
		elog(ERROR, "es: query failed: %s", SPI_result_code_string(rc));
	return SPI_processed;
}

/* The caller must have EXECUTE on the reducer: it runs with its rights */
static void
fold_check_execute(Oid funcoid)
{
	AclResult	aclresult = pg_proc_aclcheck_compat(funcoid, GetUserId(), ACL_EXECUTE);

	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FUNCTION, format_procedure(funcoid));
}

/* True when the caller may run es.save_snapshot (and so save automatically) */
static bool
fold_may_save_snapshot(void)
{
	Oid			argtypes[4] = {TEXTOID, INT8OID, JSONBOID, TEXTOID};
	Oid			fn = LookupFuncName(list_make2(makeString("es"), makeString("save_snapshot")),
									4, argtypes, true);

	return OidIsValid(fn) &&
		pg_proc_aclcheck_compat(fn, GetUserId(), ACL_EXECUTE) == ACLCHECK_OK;
}

PG_FUNCTION_INFO_V1(es_fold);

/* es.fold(stream_id, reducer, initial, snapshot_type) */
Datum
es_fold(PG_FUNCTION_ARGS)
{
	text	   *stream_id = read_stream_id_arg(fcinfo, 0);
	FoldState	f;
	MemoryContext caller = CurrentMemoryContext;
	ErrorContextCallback errcb;
	int64		snapshot_version = 0;
	int64		interval = 0;
	Jsonb	   *result;
	int			guc_level;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("reducer must not be null")));
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("initial must not be null"),
				 errhint("Use '{}' for an empty state.")));

	memset(&f, 0, sizeof(f));
	f.stream_id = text_to_cstring(stream_id);
	f.userid = GetUserId();
	fold_check_execute(PG_GETARG_OID(1));
	guc_level = es_internal_begin();
	f.reducer = fold_acquire(PG_GETARG_OID(1));
	f.event_desc = lookup_rowtype_tupdesc_copy(f.reducer->event_type, -1);
	es_check_row_type(f.event_desc, ES_ROW_EVENT);
	f.state_cxt = AllocSetContextCreate(CurrentMemoryContext, "es fold state",
										ALLOCSET_DEFAULT_SIZES);
	f.state = (Jsonb *) MemoryContextAlloc(f.state_cxt, VARSIZE(PG_GETARG_JSONB_P(2)));
	memcpy(f.state, PG_GETARG_JSONB_P(2), VARSIZE(PG_GETARG_JSONB_P(2)));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "es: SPI_connect failed");

	/* start from the latest snapshot of the type, if any */
	if (!PG_ARGISNULL(3))
	{
		Oid			types[2] = {TEXTOID, TEXTOID};
		Datum		values[2];
		EsUserCode	uc;

		values[0] = PointerGetDatum(stream_id);
		values[1] = PG_GETARG_DATUM(3);
		if (fold_spi("SELECT s.version, s.state FROM es.load_snapshot($1, $2) s",
					 2, types, values) > 0)
		{
			bool		isnull;
			MemoryContext old;

			snapshot_version = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
														   SPI_tuptable->tupdesc, 1, &isnull));
			old = MemoryContextSwitchTo(f.state_cxt);
			pfree(f.state);
			f.state = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0],
													   SPI_tuptable->tupdesc, 2, &isnull));
			MemoryContextSwitchTo(old);
		}
		/* read as its owner, so that anybody who may fold finds them */
		es_as_owner_begin(&uc, es_relation_oid(ES_SNAPSHOTS));
		if (fold_spi("SELECT i.every FROM ONLY es.snapshot_intervals i"
					 " WHERE i.snapshot_type OPERATOR(pg_catalog.=) $1",
					 1, types, &values[1]) > 0)
		{
			bool		isnull;

			interval = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
												   SPI_tuptable->tupdesc, 1, &isnull));
		}
		es_usercode_end(&uc);
	}
	f.version = snapshot_version;

	errcb.callback = fold_error_callback;
	errcb.arg = &f;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	read_stream_each(stream_id, snapshot_version + 1, fold_event, &f);
	error_context_stack = errcb.previous;
	fold_release(f.reducer);
	f.reducer = NULL;

	/*
	 * Automatic snapshot: enough events folded, we may write, and the caller
	 * may save snapshots itself.  It is saved as the caller: a snapshot is a
	 * state that other roles' folds trust, and the caller chose the reducer.
	 */
	if (interval > 0 && f.folded >= interval && !XactReadOnly &&
		!RecoveryInProgress() && fold_may_save_snapshot())
	{
		Oid			types[4] = {TEXTOID, INT8OID, JSONBOID, TEXTOID};
		Datum		values[4];

		values[0] = PointerGetDatum(stream_id);
		values[1] = Int64GetDatum(f.version);
		values[2] = JsonbPGetDatum(f.state);
		values[3] = PG_GETARG_DATUM(3);
		fold_spi("SELECT es.save_snapshot($1, $2, $3, $4)", 4, types, values);
	}
	SPI_finish();
	es_internal_end(guc_level);

	result = (Jsonb *) MemoryContextAlloc(caller, VARSIZE(f.state));
	memcpy(result, f.state, VARSIZE(f.state));
	MemoryContextDelete(f.state_cxt);
	PG_RETURN_JSONB_P(result);
}
