/*-------------------------------------------------------------------------
 *
 * upcast_edit.c
 *	  The declarative edits of upcaster steps (rename, add, remove keys of
 *	  an event's object): a chain of them edits the object's top-level pairs
 *	  in place, and the object is written once, directly in jsonb's binary
 *	  layout.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "es.h"
#include "upcast_int.h"

/* Index of "key" in a list of names (of lengths "lens"), or -1 */
static int
upcast_name_index(char **names, const int *lens, int n, const char *key, int keylen)
{
	int			i;

	for (i = 0; i < n; i++)
		if (lens[i] == keylen && memcmp(names[i], key, keylen) == 0)
			return i;
	return -1;
}

/* Index of a key in the pairs, or -1 */
static int
upcast_pairs_find(UpcastPairs *p, const char *key, int len)
{
	int			i;

	for (i = 0; i < p->n; i++)
		if (p->keys[i].val.string.len == len &&
			memcmp(p->keys[i].val.string.val, key, len) == 0)
			return i;
	return -1;
}

/* Room for "n" pairs, in the pairs' context */
static void
upcast_pairs_grow(UpcastPairs *p, int n)
{
	MemoryContext cxt = p->cxt ? p->cxt : CurrentMemoryContext;

	p->cap = Max(Max(p->cap * 2, n), 8);
	p->keys = p->keys ? repalloc(p->keys, sizeof(JsonbValue) * p->cap)
		: MemoryContextAlloc(cxt, sizeof(JsonbValue) * p->cap);
	p->vals = p->vals ? repalloc(p->vals, sizeof(JsonbValue) * p->cap)
		: MemoryContextAlloc(cxt, sizeof(JsonbValue) * p->cap);
}

/* Room for one more pair */
static inline void
upcast_pairs_reserve(UpcastPairs *p)
{
	if (p->n >= p->cap)
		upcast_pairs_grow(p, p->n + 1);
}

/* Set a key: replace its value when present, else append it */
static void
upcast_pairs_set(UpcastPairs *p, const JsonbValue *key, const JsonbValue *val)
{
	int			i = upcast_pairs_find(p, key->val.string.val, key->val.string.len);

	if (i >= 0)
	{
		p->vals[i] = *val;
		return;
	}
	upcast_pairs_reserve(p);
	p->keys[p->n] = *key;
	p->vals[p->n++] = *val;
	p->sorted = false;
}

/*
 * Decode the top level of an object into the pairs (nested values stay
 * binary), reading its entries directly: what JsonbIteratorNext gives with
 * skipNested, without an iterator and an offset lookup per value.
 */
void
upcast_pairs_load(UpcastPairs *p, Jsonb *data)
{
	int			n = JB_ROOT_COUNT(data);
	const JEntry *children = data->root.children;
	const char *base = (const char *) &children[2 * n];
	uint32		offset = 0;
	int			i;

	if (!JB_ROOT_IS_OBJECT(data) || JB_ROOT_IS_SCALAR(data))
		elog(ERROR, "es: event data to upcast is not a JSON object");
	if (p->cap < n)
		upcast_pairs_grow(p, n + 8);
	for (i = 0; i < 2 * n; i++)
	{
		JEntry		e = children[i];
		uint32		len = JBE_HAS_OFF(e) ? JBE_OFFLENFLD(e) - offset : JBE_OFFLENFLD(e);
		JsonbValue *v = i < n ? &p->keys[i] : &p->vals[i - n];

		if (JBE_ISSTRING(e))
		{
			v->type = jbvString;
			v->val.string.val = (char *) base + offset;
			v->val.string.len = len;
		}
		else if (JBE_ISNUMERIC(e))
		{
			v->type = jbvNumeric;
			v->val.numeric = (Numeric) (base + INTALIGN(offset));
		}
		else if (JBE_ISBOOL_TRUE(e) || JBE_ISBOOL_FALSE(e))
		{
			v->type = jbvBool;
			v->val.boolean = JBE_ISBOOL_TRUE(e) != 0;
		}
		else if (JBE_ISNULL(e))
			v->type = jbvNull;
		else
		{
			Assert(JBE_ISCONTAINER(e));
			v->type = jbvBinary;
			v->val.binary.data = (JsonbContainer *) (base + INTALIGN(offset));
			v->val.binary.len = len - (INTALIGN(offset) - offset);
		}
		offset += len;
	}
	p->n = n;
	p->sorted = true;
}

/* jsonb's order of object keys: shorter first, then bytewise */
static int
upcast_key_cmp(const JsonbValue *a, const JsonbValue *b)
{
	if (a->val.string.len != b->val.string.len)
		return a->val.string.len < b->val.string.len ? -1 : 1;
	return memcmp(a->val.string.val, b->val.string.val, a->val.string.len);
}

/* Put the pairs in jsonb's key order (insertion sort: objects are small) */
static void
upcast_pairs_sort(UpcastPairs *p)
{
	int			i;

	for (i = 1; i < p->n; i++)
	{
		JsonbValue	k = p->keys[i];
		JsonbValue	v = p->vals[i];
		int			j = i - 1;

		while (j >= 0 && upcast_key_cmp(&p->keys[j], &k) > 0)
		{
			p->keys[j + 1] = p->keys[j];
			p->vals[j + 1] = p->vals[j];
			j--;
		}
		p->keys[j + 1] = k;
		p->vals[j + 1] = v;
	}
	p->sorted = true;
}

#ifdef ES_CHECK_JSONB_BUILD
/* The object the pairs describe, built by jsonb_util.c (to check the below) */
static Jsonb *
upcast_pairs_build_slow(UpcastPairs *p)
{
	JsonbParseState *state = NULL;
	JsonbValue *res;
	int			i;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (i = 0; i < p->n; i++)
	{
		pushJsonbValue(&state, WJB_KEY, &p->keys[i]);
		pushJsonbValue(&state, WJB_VALUE, &p->vals[i]);
	}
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}
#endif

/*
 * Build the object the pairs describe, written directly in jsonb's binary
 * layout, byte for byte what JsonbValueToJsonb writes (jsonb_util.c's
 * convertJsonbObject): the header, one JEntry per key then per value (an
 * end offset every JB_OFFSET_STRIDE entries, else a length), the keys, then
 * the values, numerics and containers aligned to 4 bytes (the padding
 * counted in their length).  A nested object or array (jbvBinary) is copied
 * as it is stored, not decoded and encoded again.
 */
Jsonb *
upcast_pairs_build(UpcastPairs *p)
{
	int			n = p->n;
	Size		size;
	char	   *buf;
	uint32		header;
	JEntry	   *entries;
	uint32		totallen = 0;
	Size		pos;
	int			i;

	if (!p->sorted)
		upcast_pairs_sort(p);

	/* at most: the varlena and container headers, entries, data, padding */
	size = VARHDRSZ + sizeof(uint32) + sizeof(JEntry) * 2 * n;
	for (i = 0; i < n; i++)
	{
		JsonbValue *v = &p->vals[i];

		size += p->keys[i].val.string.len + sizeof(int32);
		if (v->type == jbvString)
			size += v->val.string.len;
		else if (v->type == jbvNumeric)
			size += VARSIZE_ANY(v->val.numeric);
		else if (v->type == jbvBinary)
			size += v->val.binary.len;
	}
	if (size > MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("upcast event data exceeds the maximum size of a jsonb value")));
	buf = palloc(size);
	header = (uint32) n | JB_FOBJECT;
	memcpy(buf + VARHDRSZ, &header, sizeof(uint32));
	entries = (JEntry *) (buf + VARHDRSZ + sizeof(uint32));
	pos = VARHDRSZ + sizeof(uint32) + sizeof(JEntry) * 2 * n;

	for (i = 0; i < 2 * n; i++)
	{
		JsonbValue *v = i < n ? &p->keys[i] : &p->vals[i - n];
		JEntry		meta;
		Size		start = pos;
		Size		len;

		switch (v->type)
		{
			case jbvNull:
				meta = JENTRY_ISNULL;
				break;
			case jbvBool:
				meta = v->val.boolean ? JENTRY_ISBOOL_TRUE : JENTRY_ISBOOL_FALSE;
				break;
			case jbvString:
				memcpy(buf + pos, v->val.string.val, v->val.string.len);
				pos += v->val.string.len;
				meta = JENTRY_ISSTRING;
				break;
			case jbvNumeric:
				while (pos != INTALIGN(pos))
					buf[pos++] = 0;
				memcpy(buf + pos, v->val.numeric, VARSIZE_ANY(v->val.numeric));
				pos += VARSIZE_ANY(v->val.numeric);
				meta = JENTRY_ISNUMERIC;
				break;
			case jbvBinary:
				while (pos != INTALIGN(pos))
					buf[pos++] = 0;
				memcpy(buf + pos, v->val.binary.data, v->val.binary.len);
				pos += v->val.binary.len;
				meta = JENTRY_ISCONTAINER;
				break;
			default:
				elog(ERROR, "es: unexpected jsonb value type %d", (int) v->type);
				meta = 0;		/* keep compiler quiet */
		}
		len = pos - start;
		totallen += len;
		if (totallen > JENTRY_OFFLENMASK)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("total size of jsonb object elements exceeds the maximum of %d bytes",
							JENTRY_OFFLENMASK)));
		if ((i % JB_OFFSET_STRIDE) == 0)
			meta |= totallen | JENTRY_HAS_OFF;
		else
			meta |= len;
		entries[i] = meta;
	}
	SET_VARSIZE(buf, pos);
#ifdef ES_CHECK_JSONB_BUILD
	{
		Jsonb	   *slow = upcast_pairs_build_slow(p);

		if (VARSIZE(slow) != pos || memcmp(slow, buf, pos) != 0)
			elog(ERROR, "es: upcast_pairs_build differs from JsonbValueToJsonb");
	}
#endif
	return (Jsonb *) buf;
}

/*
 * Apply a step's declarative edits to the pairs, in the documented order:
 * rename keys (a renamed value replaces a key of the new name; of two keys
 * renamed to one name, the later in key order wins, as when the object is
 * rebuilt), then add missing keys with their defaults, then remove keys.
 * Top-level keys only.  "work" is scratch space, swapped with "p".
 */
void
upcast_pairs_edit(UpcastStep *step, UpcastPairs *p, UpcastPairs *work)
{
	int			i;

	if (step->nrename > 0)
	{
		UpcastPairs tmp;

		if (step->nrename > 1 && !p->sorted)
			upcast_pairs_sort(p);
		work->n = 0;
		work->sorted = p->sorted;
		/* kept keys, in their order, then the renamed ones */
		for (i = 0; i < p->n; i++)
			if (upcast_name_index(step->rename_from, step->rename_from_len, step->nrename,
								  p->keys[i].val.string.val,
								  p->keys[i].val.string.len) < 0)
			{
				upcast_pairs_reserve(work);
				work->keys[work->n] = p->keys[i];
				work->vals[work->n++] = p->vals[i];
			}
		for (i = 0; i < p->n; i++)
		{
			int			r = upcast_name_index(step->rename_from, step->rename_from_len,
											  step->nrename,
											  p->keys[i].val.string.val,
											  p->keys[i].val.string.len);
			JsonbValue	k;

			if (r < 0)
				continue;
			k.type = jbvString;
			k.val.string.val = step->rename_to[r];
			k.val.string.len = step->rename_to_len[r];
			upcast_pairs_set(work, &k, &p->vals[i]);
		}
		tmp = *p;
		*p = *work;
		*work = tmp;
	}
	for (i = 0; i < step->nadd; i++)
		if (upcast_pairs_find(p, step->add_keys[i].val.string.val,
							  step->add_keys[i].val.string.len) < 0)
		{
			upcast_pairs_reserve(p);
			p->keys[p->n] = step->add_keys[i];
			p->vals[p->n++] = step->add_vals[i];
			p->sorted = false;
		}
	for (i = 0; i < step->nremove; i++)
	{
		int			j = upcast_pairs_find(p, step->remove[i], step->remove_len[i]);

		if (j < 0)
			continue;
		/* keep the order of the others */
		memmove(&p->keys[j], &p->keys[j + 1], sizeof(JsonbValue) * (p->n - j - 1));
		memmove(&p->vals[j], &p->vals[j + 1], sizeof(JsonbValue) * (p->n - j - 1));
		p->n--;
	}
}

/*
 * Fill in what the edits of a step loaded from the registry need besides
 * the names: their lengths, and whether the step has any edit (in the
 * step's memory context).
 */
void
upcast_step_edits_init(UpcastStep *step)
{
	int			i;

	step->rename_from_len = palloc(sizeof(int) * Max(step->nrename, 1));
	step->rename_to_len = palloc(sizeof(int) * Max(step->nrename, 1));
	for (i = 0; i < step->nrename; i++)
	{
		step->rename_from_len[i] = strlen(step->rename_from[i]);
		step->rename_to_len[i] = strlen(step->rename_to[i]);
	}
	step->remove_len = palloc(sizeof(int) * Max(step->nremove, 1));
	for (i = 0; i < step->nremove; i++)
		step->remove_len[i] = strlen(step->remove[i]);
	step->has_edits = step->nrename > 0 || step->nremove > 0 || step->nadd > 0;
}

/*
 * A chain of declarative steps worked out for one shape of object: where
 * each key of the result comes from.  The edits look only at keys, never
 * at values, so objects with the same keys give results of the same keys,
 * each value taken from the same input key or added by the same step.
 */
typedef struct UpcastPlan
{
	int			nin;			/* the keys of the objects it applies to */
	int		   *inlens;
	char	   *inkeys;			/* their bytes, one after the other */
	int			nout;			/* the keys of the result, in jsonb's order */
	JsonbValue *outkeys;		/* (their bytes in outbytes) */
	char	   *outbytes;
	int		   *src;			/* the input value of each, or -1 ... */
	JsonbValue *consts;			/* ... for the value a step adds */
} UpcastPlan;

/* True when the keys of "in" are those the plan is for */
static bool
upcast_plan_matches(UpcastPlan *plan, UpcastPairs *in)
{
	const char *k = plan->inkeys;
	int			i;

	if (plan->nin != in->n)
		return false;
	for (i = 0; i < in->n; i++)
	{
		if (in->keys[i].val.string.len != plan->inlens[i] ||
			memcmp(in->keys[i].val.string.val, k, plan->inlens[i]) != 0)
			return false;
		k += plan->inlens[i];
	}
	return true;
}

/*
 * Work out the chain from "first" for the keys of "in": run its edits on
 * the keys with markers for values (a jbvBinary of length -1 pointing to
 * the input's slot), and record the result in the first step (in the
 * context of the pairs, the cache's: the values steps add live there too).
 */
static UpcastPlan *
upcast_plan_make(UpcastStep *first, UpcastPairs *in, UpcastPairs *out, UpcastPairs *scratch)
{
	MemoryContext cxt = in->cxt ? in->cxt : CurrentMemoryContext;
	UpcastPlan *plan = first->plan;
	UpcastStep *step;
	Size		inbytes = 0;
	Size		outbytes = 0;
	char	   *b;
	int			i;

	out->n = 0;
	out->sorted = in->sorted;
	for (i = 0; i < in->n; i++)
	{
		upcast_pairs_reserve(out);
		out->keys[out->n] = in->keys[i];
		out->vals[out->n].type = jbvBinary;
		out->vals[out->n].val.binary.data = (JsonbContainer *) &in->vals[i];
		out->vals[out->n++].val.binary.len = -1;
		inbytes += in->keys[i].val.string.len;
	}
	step = first;
	for (i = 0; i < first->chain_length; i++)
	{
		upcast_pairs_edit(step, out, scratch);
		step = step->next;
	}
	if (!out->sorted)
		upcast_pairs_sort(out);
	for (i = 0; i < out->n; i++)
		outbytes += out->keys[i].val.string.len;

	/* one block: the struct, then its arrays and bytes */
	if (plan != NULL)
		pfree(plan);
	plan = MemoryContextAlloc(cxt, MAXALIGN(sizeof(UpcastPlan)) +
							  MAXALIGN(sizeof(JsonbValue) * 2 * Max(out->n, 1)) +
							  MAXALIGN(sizeof(int) * (in->n + out->n + 1)) +
							  inbytes + outbytes);
	b = (char *) plan + MAXALIGN(sizeof(UpcastPlan));
	plan->outkeys = (JsonbValue *) b;
	plan->consts = plan->outkeys + Max(out->n, 1);
	b += MAXALIGN(sizeof(JsonbValue) * 2 * Max(out->n, 1));
	plan->inlens = (int *) b;
	plan->src = plan->inlens + in->n;
	b += MAXALIGN(sizeof(int) * (in->n + out->n + 1));
	plan->inkeys = b;
	plan->outbytes = b + inbytes;
	plan->nin = in->n;
	for (i = 0; i < in->n; i++)
	{
		plan->inlens[i] = in->keys[i].val.string.len;
		memcpy(b, in->keys[i].val.string.val, plan->inlens[i]);
		b += plan->inlens[i];
	}
	plan->nout = out->n;
	for (i = 0; i < out->n; i++)
	{
		JsonbValue *v = &out->vals[i];

		plan->outkeys[i] = out->keys[i];
		plan->outkeys[i].val.string.val = b;
		memcpy(b, out->keys[i].val.string.val, out->keys[i].val.string.len);
		b += out->keys[i].val.string.len;
		if (v->type == jbvBinary && v->val.binary.len == -1)
			plan->src[i] = (JsonbValue *) v->val.binary.data - in->vals;
		else
		{
			/* a value a step adds: it lives in the step, as long as the plan */
			plan->src[i] = -1;
			plan->consts[i] = *v;
		}
	}
	first->plan = plan;
	return plan;
}

/*
 * Apply a chain of declarative steps only, from "first", to an object:
 * worked out once for the object's keys (upcast_plan_make), then each
 * object of the same keys is one pass from its top-level values to the
 * result.  "in", "out" and "scratch" are pairs to work in.
 */
Jsonb *
upcast_chain_edit(UpcastStep *first, Jsonb *data, UpcastPairs *in, UpcastPairs *out,
				  UpcastPairs *scratch)
{
	UpcastPlan *plan = first->plan;
	int			i;

	upcast_pairs_load(in, data);
	if (plan == NULL || !upcast_plan_matches(plan, in))
		plan = upcast_plan_make(first, in, out, scratch);
	if (out->cap < plan->nout)
		upcast_pairs_grow(out, plan->nout);
	for (i = 0; i < plan->nout; i++)
	{
		out->keys[i] = plan->outkeys[i];
		out->vals[i] = plan->src[i] >= 0 ? in->vals[plan->src[i]] : plan->consts[i];
	}
	out->n = plan->nout;
	out->sorted = true;
	return upcast_pairs_build(out);
}
