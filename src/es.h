/*-------------------------------------------------------------------------
 *
 * es.h
 *	  Shared declarations of the es event store extension.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ES_H
#define ES_H

#include "utils/snapshot.h"

/* SQLSTATEs of our own, documented in doc/reference.md */
#define ERRCODE_ES_WRONG_EXPECTED_VERSION	MAKE_SQLSTATE('E','S','0','0','1')
#define ERRCODE_ES_IDEMPOTENCY_MISMATCH		MAKE_SQLSTATE('E','S','0','0','2')

/* GUCs (es.c) */
extern bool es_notify;

/* es.c: cached catalog lookups */
extern Oid	es_sequence_oid(void);

/* horizon.c: gap-safe read horizon kept in shared memory */
extern void HorizonShmemRequest(void);
extern void HorizonShmemStartup(void);
extern void HorizonInit(void);
extern bool horizon_enabled(void);
extern void horizon_begin_allocation(void);
extern void horizon_end_allocation(int64 first_position);
extern Snapshot horizon_snapshot(int64 *horizon);

#endif							/* ES_H */
