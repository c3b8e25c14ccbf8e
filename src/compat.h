/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  What differs between the PostgreSQL majors es builds against (15-18).
 *
 * Every difference is wrapped here once, under a PG_VERSION_NUM guard that
 * names the major that made the change, so that the .c files call one name
 * on every version and hold no #if of their own.  16 is covered by these
 * guards but not tested (no Debian suite ships it); 15, 17 and 18 are built
 * with -Werror and tested by .ci/run.
 *
 * The wrappers are macros where they need types the including file brings
 * (executor, index scans), and inline functions otherwise.  The replication
 * slot ones are defined only for files that include replication/slot.h
 * before es.h (projector/slot.c).  One change needs no wrapper: 16 stopped
 * including utils/array.h indirectly, so the files that use arrays include
 * it themselves.
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ES_COMPAT_H
#define ES_COMPAT_H

#include "miscadmin.h"
/* 16: object_aclcheck (utils/acl.h) takes the catalog (catalog/pg_proc.h) */
#if PG_VERSION_NUM >= 160000
#include "catalog/pg_proc.h"
#include "utils/acl.h"
#endif
/* 17: MyProcNumber (storage/procnumber.h) replaces MyBackendId */
#if PG_VERSION_NUM >= 170000
#include "storage/procnumber.h"
#else
#include "storage/backendid.h"
#endif

/*
 * 18: pg_noreturn, placed before a declaration (C11 _Noreturn), replaces
 * pg_attribute_noreturn() placed after it.  GCC and clang take the attribute
 * in front too, so before 18 pg_noreturn is that attribute.
 */
#if PG_VERSION_NUM < 180000
#define pg_noreturn pg_attribute_noreturn()
#endif

/*
 * This backend's slot among MaxBackends, from 0.  17: MyBackendId (from 1)
 * became MyProcNumber (from 0, the index of the backend's PGPROC, whose
 * first MaxBackends entries are the regular backends and workers).
 */
static inline int
backend_slot_compat(void)
{
#if PG_VERSION_NUM >= 170000
	return MyProcNumber;
#else
	return MyBackendId - 1;
#endif
}

/*
 * May the role use the function?  16: object_aclcheck on the catalog
 * replaces the per-catalog pg_proc_aclcheck.
 */
#if PG_VERSION_NUM >= 160000
#define pg_proc_aclcheck_compat(proc, role, mode) \
	object_aclcheck(ProcedureRelationId, (proc), (role), (mode))
#else
#define pg_proc_aclcheck_compat(proc, role, mode) \
	pg_proc_aclcheck((proc), (role), (mode))
#endif

/*
 * Insert a tuple's index entries (executor/executor.h).  16: the
 * onlySummarizing argument (false: every index, as before).
 */
#if PG_VERSION_NUM >= 160000
#define ExecInsertIndexTuples_compat(rri, slot, estate, update, noDupErr, specConflict, arbiters) \
	ExecInsertIndexTuples((rri), (slot), (estate), (update), (noDupErr), \
						  (specConflict), (arbiters), false)
#else
#define ExecInsertIndexTuples_compat(rri, slot, estate, update, noDupErr, specConflict, arbiters) \
	ExecInsertIndexTuples((rri), (slot), (estate), (update), (noDupErr), \
						  (specConflict), (arbiters))
#endif

/*
 * Begin an index scan (access/genam.h).  18: the instrumentation argument
 * (NULL: none, as before).
 */
#if PG_VERSION_NUM >= 180000
#define index_beginscan_compat(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), NULL, (nkeys), (norderbys))
#else
#define index_beginscan_compat(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), (nkeys), (norderbys))
#endif

#ifdef SLOT_H

/*
 * Acquire a replication slot.  18: error_if_invalid; es asks for the error,
 * which the older majors raise as soon as decoding starts on an invalidated
 * slot.
 */
static inline void
ReplicationSlotAcquire_compat(const char *name, bool nowait)
{
#if PG_VERSION_NUM >= 180000
	ReplicationSlotAcquire(name, nowait, true);
#else
	ReplicationSlotAcquire(name, nowait);
#endif
}

/*
 * Why the server invalidated a replication slot, by the name that
 * pg_replication_slots.invalidation_reason (17) shows, or NULL while it is
 * valid.  16: the slot records the cause (ReplicationSlotInvalidationCause,
 * replacing invalidated_at), and 17 names the causes (SlotInvalidationCauses;
 * 18: GetSlotInvalidationCauseName); 16 gets the names 17 gave them.  15
 * invalidates a slot for one cause only, the WAL it needs removed past
 * max_slot_wal_keep_size.
 */
static inline const char *
ReplicationSlotInvalidationCause_compat(ReplicationSlot *slot)
{
#if PG_VERSION_NUM >= 160000
	ReplicationSlotInvalidationCause cause;

	SpinLockAcquire(&slot->mutex);
	cause = slot->data.invalidated;
	SpinLockRelease(&slot->mutex);
	if (cause == RS_INVAL_NONE)
		return NULL;
#if PG_VERSION_NUM >= 180000
	return GetSlotInvalidationCauseName(cause);
#elif PG_VERSION_NUM >= 170000
	return SlotInvalidationCauses[cause];
#else
	switch (cause)
	{
		case RS_INVAL_NONE:
			break;
		case RS_INVAL_WAL_REMOVED:
			return "wal_removed";
		case RS_INVAL_HORIZON:
			return "rows_removed";
		case RS_INVAL_WAL_LEVEL:
			return "wal_level_insufficient";
	}
	return "unknown";
#endif
#else
	XLogRecPtr	invalidated_at;

	SpinLockAcquire(&slot->mutex);
	invalidated_at = slot->data.invalidated_at;
	SpinLockRelease(&slot->mutex);
	return XLogRecPtrIsInvalid(invalidated_at) ? NULL : "wal_removed";
#endif
}

#endif							/* SLOT_H */

/*
 * 16: vacuum() takes the memory context its work lives in (15 makes one
 * under PortalContext), and VACUUM processes the main relation only when
 * asked (VACOPT_PROCESS_MAIN, set by default by the command); a vacuum of
 * one table may leave the database's frozen xid alone
 * (VACOPT_SKIP_DATABASE_STATS).  For files that include commands/vacuum.h.
 */
#if PG_VERSION_NUM >= 160000
#define ES_VACOPT_DEFAULTS	(VACOPT_PROCESS_MAIN | VACOPT_PROCESS_TOAST | VACOPT_SKIP_DATABASE_STATS)
#define vacuum_compat(rels, params, strategy, cxt) \
	vacuum((rels), (params), (strategy), (cxt), true)
#else
#define ES_VACOPT_DEFAULTS	VACOPT_PROCESS_TOAST
#define vacuum_compat(rels, params, strategy, cxt) \
	vacuum((rels), (params), (strategy), true)
#endif

#endif							/* ES_COMPAT_H */
