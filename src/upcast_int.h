/*-------------------------------------------------------------------------
 *
 * upcast_int.h
 *	  What upcast.c and upcast_edit.c share: a registered step, and the
 *	  top-level pairs of an object that declarative steps edit.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ES_UPCAST_INT_H
#define ES_UPCAST_INT_H

#include "nodes/execnodes.h"
#include "utils/jsonb.h"

/* Hash key: an event type and a schema version */
typedef struct UpcastKey
{
	const char *type;			/* not NUL-terminated */
	int			len;
	int32		version;
} UpcastKey;

struct UpcastPlan;

/* One registered step, from (type, version) to (to_type, version + 1) */
typedef struct UpcastStep
{
	UpcastKey	key;
	char	   *to_type;		/* NUL-terminated; the same type when not renamed */
	text	   *to_type_text;	/* ... as a text value */
	bool		renames_type;
	Oid			funcoid;		/* InvalidOid when there is no function */
	Oid			owner;			/* the function's owner: it runs as that role */
	char	   *search_path;	/* ... with the path captured at registration */
	char	   *funcname;		/* the function, for messages */
	Expr	   *planned;		/* fn($1), planned on first use */
	bool		inert;			/* ... and it cannot change any setting */
	struct UpcastStep *next;	/* the step after it, or NULL ... */
	bool		next_known;		/* ... once looked up */
	ExprState **exprs;			/* its ExprState for each call depth, or NULL */
	int			nexprs;
	bool		has_edits;		/* any of the declarative edits below */
	int			nrename;		/* declarative edits: rename old -> new */
	char	  **rename_from;
	int		   *rename_from_len;
	char	  **rename_to;
	int		   *rename_to_len;
	Jsonb	   *add_fields;		/* NULL when none */
	int			nadd;			/* ... and its pairs, decoded */
	JsonbValue *add_keys;
	JsonbValue *add_vals;
	int			nremove;
	char	  **remove;
	int		   *remove_len;
	/* the chain that starts here, once worked out (upcast_chain_info) */
	bool		chain_known;
	bool		chain_edits_only;	/* none of its steps has a function */
	bool		chain_has_edits;	/* some step of it edits the data */
	int			chain_length;
	struct UpcastStep *chain_last;
	struct UpcastStep *chain_renamed;	/* its last step renaming the type */
	struct UpcastPlan *plan;	/* its edits for the last shape met */
} UpcastStep;

/*
 * The top-level pairs of an object being edited by declarative steps: a
 * chain of steps edits them in place, and the object is built once at the
 * end (or before a function step), not once per step.  Keys are unique;
 * "sorted" tells whether they are in jsonb's key order, the order in which
 * a step meets the keys of a stored object.  The arrays are allocated in
 * "cxt" and kept from event to event.
 */
typedef struct UpcastPairs
{
	int			n;
	int			cap;
	bool		sorted;
	MemoryContext cxt;
	JsonbValue *keys;			/* jbvString */
	JsonbValue *vals;			/* scalars or jbvBinary */
} UpcastPairs;

/* upcast_edit.c */
extern void upcast_pairs_load(UpcastPairs *p, Jsonb *data);
extern void upcast_pairs_edit(UpcastStep *step, UpcastPairs *p, UpcastPairs *work);
extern Jsonb *upcast_pairs_build(UpcastPairs *p);
extern void upcast_step_edits_init(UpcastStep *step);
extern Jsonb *upcast_chain_edit(UpcastStep *first, Jsonb *data, UpcastPairs *in,
								UpcastPairs *out, UpcastPairs *scratch);

/* upcast.c: the memory of the backend's cache of the registry */
extern MemoryContext upcast_cxt;

/* upcast_inline.c */
extern void upcast_prepare(UpcastStep *step);
extern Jsonb *upcast_call(UpcastStep *step, Jsonb *data);
extern void upcast_calls_reset(void);
extern void upcast_calls_end_xact(void);

#endif							/* ES_UPCAST_INT_H */
