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
