/*-------------------------------------------------------------------------
 *
 * upcast.c
 *	  Upcasting: evolve stored event payloads to their newest schema on the
 *	  way out of the store.
 *
 * The registry (es.upcaster_steps) holds one step per (event type, schema
 * version): an optional function, an optional new type name, and optional
 * declarative edits (rename, add, remove keys) applied after the function.
 * Each backend loads the registry once into a hash table keyed by (type,
 * version).  A statement trigger on the registry sends a relcache
 * invalidation, so every session sees a change on its next read; a change
 * of any function (CREATE OR REPLACE) also resets the cache.
 *
 * A function step is compiled once into an expression, fn($1), through the
 * planner: a SQL-language upcaster made of one expression is inlined, and
 * runs as fast as the same expression written by hand in a query
 * (upcast_inline.c).  Declarative edits work on the object's top-level
 * pairs (upcast_edit.c).  This file holds the cache and runs the chain of
 * steps of each event, with the identity and search_path each step's user
 * code runs under.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "storage/sinval.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/acl.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "es.h"
#include "upcast_int.h"

/* The backend's cache of the registry */
MemoryContext upcast_cxt = NULL;	/* the cache's memory (upcast_int.h) */
static HTAB *upcast_steps = NULL;
static bool upcast_valid = false;
static int	upcast_nsteps = 0;
static int	upcast_depth = 0;	/* reads using the cache right now */
static Oid	upcast_registry_relid = InvalidOid;	/* es.upcaster_steps */

/* The last first-step lookup: events of one type and version come in runs */
static char *upcast_last_type = NULL;	/* in upcast_cxt */
static int	upcast_last_len = -1;
static int32 upcast_last_version = 0;
static UpcastStep *upcast_last_step = NULL;

/*
 * What declarative edits work in, kept from event to event (in upcast_cxt):
 * an event's top-level pairs and scratch pairs, and an aligned copy of
 * stored data that has a short header.  Only es's C code runs from the
 * moment an event's pairs are loaded to the moment its object is built, so
 * a nested read (an upcaster's) never finds them in use.
 */
static UpcastPairs upcast_pairs;
static UpcastPairs upcast_work;
static UpcastPairs upcast_scratch;
static char *upcast_data_buf = NULL;
static Size upcast_data_buf_size = 0;

/* What an error while upcasting should name */
typedef struct UpcastErrorContext
{
	int64		position;
	Datum		stream_id;		/* text, converted only if an error is reported */
	Datum		stored_type;	/* text */
	int32		stored_version;
	UpcastStep *step;
} UpcastErrorContext;


/* Hash of a key: its type's bytes and its version */
static uint32
upcast_hash(const void *key, Size keysize)
{
	const UpcastKey *k = key;

	return hash_combine(hash_bytes((const unsigned char *) k->type, k->len),
						hash_uint32((uint32) k->version));
}

/* Key equality for the hash table (0 when equal) */
static int
upcast_match(const void *key1, const void *key2, Size keysize)
{
	const UpcastKey *a = key1;
	const UpcastKey *b = key2;

	if (a->version != b->version || a->len != b->len)
		return 1;
	return memcmp(a->type, b->type, a->len);
}

/* Invalidation: the registry changed (or everything was flushed) */
void
upcast_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == upcast_registry_relid)
		upcast_valid = false;
}

/* Invalidation: some function changed; a compiled step may be stale */
void
upcast_proc_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	if (upcast_nsteps > 0)
		upcast_valid = false;
}

/* At the end of a transaction no read is using the cache any more */
void
upcast_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		upcast_depth = 0;
		upcast_calls_end_xact();
	}
}

/* A text[] datum as a palloc'd array of C strings */
static char **
upcast_text_array(Datum arr, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	char	  **result;
	int			i;

	deconstruct_array(DatumGetArrayTypeP(arr), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, n);
	result = palloc(sizeof(char *) * (*n));
	for (i = 0; i < *n; i++)
		result[i] = TextDatumGetCString(elems[i]);
	return result;
}

/* Load the registry into the cache (in upcast_cxt) */
static void
upcast_load(void)
{
	HASHCTL		ctl;
	MemoryContext old;
	uint64		i;
	EsUserCode	uc;

	if (upcast_cxt == NULL)
		upcast_cxt = AllocSetContextCreate(CacheMemoryContext, "es upcasters",
										   ALLOCSET_DEFAULT_SIZES);
	else
		MemoryContextReset(upcast_cxt);
	upcast_steps = NULL;
	upcast_nsteps = 0;
	upcast_calls_reset();
	upcast_last_type = NULL;
	upcast_last_len = -1;
	upcast_last_step = NULL;
	memset(&upcast_pairs, 0, sizeof(upcast_pairs));
	memset(&upcast_work, 0, sizeof(upcast_work));
	memset(&upcast_scratch, 0, sizeof(upcast_scratch));
	upcast_pairs.cxt = upcast_work.cxt = upcast_scratch.cxt = upcast_cxt;
	upcast_data_buf = NULL;
	upcast_data_buf_size = 0;

	/* mark valid first: an invalidation while loading marks it stale again */
	upcast_valid = true;
	/* the OID the invalidation callback compares with */
	upcast_registry_relid = es_relation_oid(ES_UPCASTER_STEPS);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(UpcastKey);
	ctl.entrysize = sizeof(UpcastStep);
	ctl.hash = upcast_hash;
	ctl.match = upcast_match;
	ctl.hcxt = upcast_cxt;
	upcast_steps = hash_create("es upcaster steps", 64, &ctl,
							   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);

	/*
	 * Every reader applies the registry, whatever its rights: read it as the
	 * registry's owner.  A load that fails leaves the cache invalid.
	 */
	es_as_owner_begin(&uc, upcast_registry_relid);
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "es: SPI_connect failed");
		if (SPI_execute("SELECT s.event_type, s.from_schema_version, "
						"s.upcaster::pg_catalog.oid, s.to_event_type, s.rename_fields, "
						"s.add_fields, s.remove_fields, p.proowner, "
						"pg_catalog.to_jsonb(s) OPERATOR(pg_catalog.->>) 'search_path' "
						"FROM ONLY es.upcaster_steps s LEFT JOIN pg_catalog.pg_proc p "
						"ON p.oid OPERATOR(pg_catalog.=) s.upcaster::pg_catalog.oid",
						true, 0) != SPI_OK_SELECT)
			elog(ERROR, "es: cannot read es.upcaster_steps");
	}
	PG_CATCH();
	{
		upcast_valid = false;
		PG_RE_THROW();
	}
	PG_END_TRY();
	es_usercode_end(&uc);

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Datum		v[9];
		bool		n[9];
		UpcastKey	key;
		UpcastStep *step;
		bool		found;
		char	   *type;

		heap_deform_tuple(tup, desc, v, n);
		old = MemoryContextSwitchTo(upcast_cxt);
		type = TextDatumGetCString(v[0]);
		key.type = type;
		key.len = strlen(type);
		key.version = DatumGetInt32(v[1]);
		step = hash_search(upcast_steps, &key, HASH_ENTER, &found);
		step->funcoid = n[2] ? InvalidOid : DatumGetObjectId(v[2]);
		if (OidIsValid(step->funcoid) && n[7])
		{
			upcast_valid = false;
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("the upcaster function %u of \"%s\" version %d does not exist",
							step->funcoid, type, key.version)));
		}
		step->owner = n[7] ? InvalidOid : DatumGetObjectId(v[7]);
		step->search_path = n[8] ? NULL : TextDatumGetCString(v[8]);
		step->funcname = NULL;
		if (OidIsValid(step->funcoid))
		{
			/* named in messages as es names it, whatever path is in force */
			int			level = es_internal_begin();

			step->funcname = format_procedure(step->funcoid);
			es_internal_end(level);
		}
		step->planned = NULL;
		step->inert = false;
		step->next = NULL;
		step->next_known = false;
		step->chain_known = false;
		step->plan = NULL;
		step->exprs = NULL;
		step->nexprs = 0;
		step->renames_type = !n[3];
		step->to_type = n[3] ? type : TextDatumGetCString(v[3]);
		step->to_type_text = cstring_to_text(step->to_type);
		step->nrename = 0;
		step->rename_from = step->rename_to = NULL;
		if (!n[4])
		{
			Jsonb	   *renames = DatumGetJsonbPCopy(v[4]);
			JsonbIterator *it = JsonbIteratorInit(&renames->root);
			JsonbValue	jv;
			JsonbIteratorToken tok;
			int			cap = JB_ROOT_COUNT(renames);

			step->rename_from = palloc(sizeof(char *) * cap);
			step->rename_to = palloc(sizeof(char *) * cap);
			while ((tok = JsonbIteratorNext(&it, &jv, true)) != WJB_DONE)
			{
				if (tok == WJB_KEY)
					step->rename_from[step->nrename] =
						pnstrdup(jv.val.string.val, jv.val.string.len);
				else if (tok == WJB_VALUE && jv.type == jbvString)
					step->rename_to[step->nrename++] =
						pnstrdup(jv.val.string.val, jv.val.string.len);
			}
		}
		step->add_fields = n[5] ? NULL : DatumGetJsonbPCopy(v[5]);
		step->nadd = 0;
		step->add_keys = step->add_vals = NULL;
		if (step->add_fields != NULL)
		{
			JsonbIterator *it = JsonbIteratorInit(&step->add_fields->root);
			JsonbValue	jv;
			JsonbIteratorToken tok;
			int			cap = JB_ROOT_COUNT(step->add_fields);

			step->add_keys = palloc(sizeof(JsonbValue) * Max(cap, 1));
			step->add_vals = palloc(sizeof(JsonbValue) * Max(cap, 1));
			while ((tok = JsonbIteratorNext(&it, &jv, true)) != WJB_DONE)
			{
				if (tok == WJB_KEY)
					step->add_keys[step->nadd] = jv;
				else if (tok == WJB_VALUE)
					step->add_vals[step->nadd++] = jv;
			}
		}
		step->nremove = 0;
		step->remove = n[6] ? NULL : upcast_text_array(v[6], &step->nremove);
		upcast_step_edits_init(step);
		upcast_nsteps++;
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
}

/*
 * Make the cache current for a read that is about to start: reload it
 * unless an outer read is still using it (an upcaster that reads events),
 * in which case the outer cache stays in use until that read ends.
 */
void
upcast_begin(void)
{
	if (upcast_depth == 0)
	{
		/* a step committed meanwhile counts even inside a transaction */
		AcceptInvalidationMessages();
		if (!upcast_valid)
			upcast_load();
	}
	upcast_depth++;
}

/* A read that called upcast_begin is done (after an error: at xact end) */
void
upcast_end(void)
{
	if (upcast_depth > 0)
		upcast_depth--;
}

/* True when at least one step is registered */
bool
upcast_any(void)
{
	return upcast_nsteps > 0;
}

/* The step of (type, version), or NULL */
static UpcastStep *
upcast_find(const char *type, int len, int32 version)
{
	UpcastKey	key;

	key.type = type;
	key.len = len;
	key.version = version;
	return hash_search(upcast_steps, &key, HASH_FIND, NULL);
}

/* Error context: name the event and the step being applied */
static void
upcast_error_callback(void *arg)
{
	UpcastErrorContext *c = arg;

	errcontext("upcasting event at global position " INT64_FORMAT
			   " (stream \"%s\", type \"%s\", stored schema version %d) "
			   "with step %.*s %d -> %d%s%s",
			   c->position, TextDatumGetCString(c->stream_id),
			   TextDatumGetCString(c->stored_type), c->stored_version,
			   c->step->key.len, c->step->key.type, c->step->key.version,
			   c->step->key.version + 1,
			   OidIsValid(c->step->funcoid) ? ", function " : "",
			   OidIsValid(c->step->funcoid) ? c->step->funcname : "");
}

/* The step that applies first to an event of this type and version, or NULL */
static UpcastStep *
upcast_first_step(Datum type, int32 version)
{
	text	   *t;

	if (upcast_nsteps == 0)
		return NULL;
	t = DatumGetTextPP(type);
	if (upcast_last_len != (int) VARSIZE_ANY_EXHDR(t) || upcast_last_version != version ||
		memcmp(upcast_last_type, VARDATA_ANY(t), upcast_last_len) != 0)
	{
		MemoryContext old = MemoryContextSwitchTo(upcast_cxt);

		if (upcast_last_type != NULL)
			pfree(upcast_last_type);
		upcast_last_len = VARSIZE_ANY_EXHDR(t);
		upcast_last_type = palloc(Max(upcast_last_len, 1));
		memcpy(upcast_last_type, VARDATA_ANY(t), upcast_last_len);
		upcast_last_version = version;
		upcast_last_step = upcast_find(upcast_last_type, upcast_last_len, version);
		MemoryContextSwitchTo(old);
	}
	return upcast_last_step;
}

/* True when two steps run as the same role with the same search_path */
static bool
upcast_same_user(UpcastStep *a, UpcastStep *b)
{
	return a->owner == b->owner &&
		(a->search_path == b->search_path ||
		 (a->search_path != NULL && b->search_path != NULL &&
		  strcmp(a->search_path, b->search_path) == 0));
}

/*
 * An event's data as an aligned jsonb, for declarative edits: stored data
 * with a short header is copied into a buffer kept for it (the edits read
 * it until the object is built), other data is detoasted as usual.
 */
static Jsonb *
upcast_data_for_edits(Datum value)
{
	Pointer		p = DatumGetPointer(value);
	Size		len;

	if (!VARATT_IS_SHORT(p))
		return DatumGetJsonbP(value);
	len = VARSIZE_SHORT(p) - VARHDRSZ_SHORT + VARHDRSZ;
	if (len > upcast_data_buf_size)
	{
		upcast_data_buf = upcast_data_buf == NULL ? MemoryContextAlloc(upcast_cxt, Max(len, 256)) :
			repalloc(upcast_data_buf, len);
		upcast_data_buf_size = Max(len, 256);
	}
	SET_VARSIZE(upcast_data_buf, len);
	memcpy(VARDATA(upcast_data_buf), VARDATA_SHORT(p), len - VARHDRSZ);
	return (Jsonb *) upcast_data_buf;
}

/* The step after "step" (at schema version "version"), or NULL */
static UpcastStep *
upcast_next(UpcastStep *step, int32 version)
{
	if (!step->next_known)
	{
		step->next = step->renames_type ?
			upcast_find(step->to_type, strlen(step->to_type), version) :
			upcast_find(step->key.type, step->key.len, version);
		step->next_known = true;
	}
	return step->next;
}

/* Work out the chain that starts at "first" (versions grow: it ends) */
static void
upcast_chain_info(UpcastStep *first)
{
	UpcastStep *step;
	int32		version = first->key.version;

	first->chain_edits_only = true;
	first->chain_has_edits = false;
	first->chain_length = 0;
	first->chain_renamed = NULL;
	for (step = first; step != NULL; step = upcast_next(step, ++version))
	{
		if (OidIsValid(step->funcoid))
			first->chain_edits_only = false;
		if (step->has_edits)
			first->chain_has_edits = true;
		if (step->renames_type)
			first->chain_renamed = step;
		first->chain_length++;
		first->chain_last = step;
	}
	first->chain_known = true;
}

/*
 * Run the chain of steps from "step" on an event's values (the es.event
 * column layout): data, event_type and schema_version are replaced.
 * Consecutive declarative edits work on the decoded top-level pairs, so a
 * chain of them decodes and builds the object once.
 */
static void
upcast_apply(UpcastStep *step, Datum *values, EsUserCodeBatch *batch)
{
	int32		version = DatumGetInt32(values[READ_ATT_SCHEMA_VERSION - 1]);
	Jsonb	   *data = NULL;	/* until a step needs it as a jsonb */
	UpcastStep *renamed = NULL; /* the last step that renamed the type */
	bool		decoded = false;
	UpcastErrorContext ctx;
	ErrorContextCallback errcb;
	EsUserCode	uc;
	UpcastStep *section = NULL; /* the step whose section is open */
	EsUserCode	call;
	UpcastStep *batched = NULL; /* the step whose batched call is open */

	ctx.position = DatumGetInt64(values[READ_ATT_GLOBAL_POSITION - 1]);
	ctx.stream_id = values[READ_ATT_STREAM_ID - 1];
	ctx.stored_type = values[READ_ATT_EVENT_TYPE - 1];
	ctx.stored_version = version;
	errcb.callback = upcast_error_callback;
	errcb.arg = &ctx;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	/* a chain of declarative steps only: one pass, from its plan */
	if (!step->chain_known)
		upcast_chain_info(step);
	if (step->chain_edits_only)
	{
		ctx.step = step->chain_last;
		if (step->chain_has_edits)
			data = upcast_chain_edit(step, upcast_data_for_edits(values[READ_ATT_DATA - 1]),
									 &upcast_pairs, &upcast_work, &upcast_scratch);
		version += step->chain_length;
		renamed = step->chain_renamed;
		step = NULL;
	}

	while (step != NULL)
	{
		ctx.step = step;
		if (OidIsValid(step->funcoid))
		{
			if (decoded)
			{
				data = upcast_pairs_build(&upcast_pairs);
				decoded = false;
			}
			else if (data == NULL)
				data = DatumGetJsonbP(values[READ_ATT_DATA - 1]);

			/* compiled first: whether it is inert is known then */
			if (step->planned == NULL)
				upcast_prepare(step);

			/*
			 * User code runs as the function's owner, with the search_path
			 * of its registration (es_usercode_begin_path): consecutive
			 * steps of one owner and path share a section, and whatever
			 * they SET is rolled back before any other code runs.  An
			 * inert step, which can SET nothing, runs in the reader's
			 * batch when it has one: the same identity, restrictions and
			 * path, without a section of its own per event; consecutive
			 * inert steps of one owner and path share one switch.
			 */
			if (batch != NULL && step->inert &&
				(section == NULL || section->owner != step->owner))
			{
				if (section != NULL)
				{
					es_usercode_end(&uc);
					section = NULL;
				}
				if (batched != NULL && !upcast_same_user(batched, step))
				{
					es_usercode_end_batched(&call);
					batched = NULL;
				}
				if (batched == NULL)
				{
					es_usercode_begin_batched(batch, &call, step->owner, step->search_path);
					batched = step;
				}
				data = upcast_call(step, data);
			}
			else
			{
				if (batched != NULL)
				{
					es_usercode_end_batched(&call);
					batched = NULL;
				}
				if (section == NULL || !upcast_same_user(section, step))
				{
					if (section != NULL)
						es_usercode_end(&uc);
					es_usercode_begin_path(&uc, step->owner, step->search_path);
					section = step;
				}
				data = upcast_call(step, data);
			}
		}
		if (step->has_edits)
		{
			if (!decoded)
			{
				upcast_pairs_load(&upcast_pairs, data != NULL ? data :
								  upcast_data_for_edits(values[READ_ATT_DATA - 1]));
				decoded = true;
			}
			upcast_pairs_edit(step, &upcast_pairs, &upcast_work);
		}
		version++;
		if (step->renames_type)
			renamed = step;
		step = upcast_next(step, version);
	}
	if (batched != NULL)
		es_usercode_end_batched(&call);
	if (section != NULL)
		es_usercode_end(&uc);
	if (decoded)
		data = upcast_pairs_build(&upcast_pairs);

	error_context_stack = errcb.previous;

	if (data != NULL)
		values[READ_ATT_DATA - 1] = JsonbPGetDatum(data);
	/* the cache's text of the type lives as long as this read */
	if (renamed != NULL)
		values[READ_ATT_EVENT_TYPE - 1] = PointerGetDatum(renamed->to_type_text);
	values[READ_ATT_SCHEMA_VERSION - 1] = Int32GetDatum(version);
}

/*
 * Upcast an event's values (the es.event column layout) to its newest
 * schema, in place.  Returns false when no step applies (nothing changed).
 * What it allocates is in the current memory context.  Call between
 * upcast_begin and upcast_end.
 */
bool
upcast_values(Datum *values, bool *nulls)
{
	return upcast_values_batched(values, nulls, NULL);
}

/*
 * The same within a batch of user-code calls (es_usercode_batch_begin), in
 * which the steps that can change no setting run (NULL: none).  The caller
 * ends the batch before running anything but its own C code.
 */
bool
upcast_values_batched(Datum *values, bool *nulls, EsUserCodeBatch *batch)
{
	UpcastStep *step = upcast_first_step(values[READ_ATT_EVENT_TYPE - 1],
										 DatumGetInt32(values[READ_ATT_SCHEMA_VERSION - 1]));

	if (step == NULL)
		return false;
	upcast_apply(step, values, batch);
	return true;
}

/*
 * Upcast an event row (of the es.event column layout) to its newest schema.
 * Returns the tuple itself when no step applies, else a new tuple.  Call
 * between upcast_begin and upcast_end.
 */
HeapTuple
upcast_tuple(HeapTuple tuple, TupleDesc desc)
{
	Datum		values[READ_NATTS];
	bool		nulls[READ_NATTS];
	bool		isnull;
	UpcastStep *step;

	if (upcast_nsteps == 0)
		return tuple;
	step = upcast_first_step(heap_getattr(tuple, READ_ATT_EVENT_TYPE, desc, &isnull),
							 DatumGetInt32(heap_getattr(tuple, READ_ATT_SCHEMA_VERSION,
														desc, &isnull)));
	if (step == NULL)
		return tuple;
	heap_deform_tuple(tuple, desc, values, nulls);
	upcast_apply(step, values, NULL);
	return heap_form_tuple(desc, values, nulls);
}

/*
 * The stored type names whose events may come out as one of "wanted": the
 * wanted names themselves and every type renamed into one of them, directly
 * or through other renames.  Returns NULL when no rename leads into them
 * (the stored names are the ones to look for).
 */
List *
upcast_source_types(List *wanted)
{
	List	   *result = list_copy(wanted);
	bool		grew = false;
	bool		changed = true;

	if (upcast_nsteps == 0)
		return NULL;

	while (changed)
	{
		HASH_SEQ_STATUS seq;
		UpcastStep *step;

		changed = false;
		hash_seq_init(&seq, upcast_steps);
		while ((step = hash_seq_search(&seq)) != NULL)
		{
			ListCell   *lc;
			bool		into = false;
			bool		known = false;

			if (!step->renames_type)
				continue;
			foreach(lc, result)
			{
				const char *name = lfirst(lc);

				if (strcmp(name, step->to_type) == 0)
					into = true;
				if ((int) strlen(name) == step->key.len &&
					memcmp(name, step->key.type, step->key.len) == 0)
					known = true;
			}
			if (into && !known)
			{
				result = lappend(result, pnstrdup(step->key.type, step->key.len));
				changed = grew = true;
			}
		}
	}
	if (!grew)
	{
		list_free(result);
		return NIL;
	}
	return result;
}
