/*-------------------------------------------------------------------------
 *
 * horizon.c
 *	  The gap-safe read horizon: which global positions may still commit.
 *
 * Positions come from a sequence, so position P+1 can commit before P.  A
 * reader that returned P+1 and checkpointed it would skip P for ever.  The
 * simple cure, reading only below the snapshot's xmin, lets any long
 * transaction stall every reader.  Instead, each appending backend records
 * in shared memory the smallest position its open transaction holds, and a
 * reader stops below the smallest recorded one.
 *
 * The protocol, with one LWLock:
 *	- an appender takes the lock in shared mode around the allocation of its
 *	  positions and records the first one in its own slot; appenders never
 *	  wait for each other;
 *	- at the end of the transaction, after its commit is visible, the slot
 *	  is cleared;
 *	- a reader takes the lock in exclusive mode, computes the horizon (the
 *	  smallest recorded position of its database, or none) and takes its
 *	  snapshot before releasing the lock.
 * Under the exclusive lock nobody is between "allocated" and "recorded", so
 * every position that is not yet visible in the snapshot either belongs to a
 * recorded slot (hence >= horizon) or will be allocated later (hence larger
 * than every position the snapshot can see).
 *
 * Copyright (c) 2026, es developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/snapmgr.h"

#include "es.h"

typedef struct HorizonSlot
{
	Oid			dboid;			/* database of the appending backend */
	int64		low;			/* smallest position held open, 0 = none */
} HorizonSlot;

typedef struct HorizonShared
{
	LWLock	   *lock;
	int			nslots;
	HorizonSlot slots[FLEXIBLE_ARRAY_MEMBER];
} HorizonShared;

static HorizonShared *horizon = NULL;

/* This backend's slot, once it has appended in the current transaction */
static HorizonSlot *my_slot = NULL;
static bool my_slot_held = false;

/* Size of the shared state */
static Size
horizon_shmem_size(void)
{
	return add_size(offsetof(HorizonShared, slots),
					mul_size(MaxBackends, sizeof(HorizonSlot)));
}

/* Ask for shared memory and the lock (shmem_request_hook, preload only) */
void
HorizonShmemRequest(void)
{
	RequestAddinShmemSpace(horizon_shmem_size());
	RequestNamedLWLockTranche("es_horizon", 1);
}

/* Create or attach the shared state (shmem_startup_hook) */
void
HorizonShmemStartup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	horizon = ShmemInitStruct("es horizon", horizon_shmem_size(), &found);
	if (!found)
	{
		horizon->lock = &(GetNamedLWLockTranche("es_horizon"))->lock;
		horizon->nslots = MaxBackends;
		memset(horizon->slots, 0, sizeof(HorizonSlot) * MaxBackends);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* True when es was preloaded, so the shared horizon exists */
bool
horizon_enabled(void)
{
	return horizon != NULL;
}

/*
 * Start allocating positions: called right before the first nextval of an
 * append.  The lock is held in shared mode until horizon_end_allocation.
 */
void
horizon_begin_allocation(void)
{
	if (horizon == NULL)
		return;
	if (backend_slot_compat() < 0 || backend_slot_compat() >= horizon->nslots)
		elog(ERROR, "es: backend slot %d outside the horizon table", backend_slot_compat());
	LWLockAcquire(horizon->lock, LW_SHARED);
}

/* Record the first position of this append, unless a smaller one is held */
void
horizon_end_allocation(int64 first_position)
{
	if (horizon == NULL)
		return;
	my_slot = &horizon->slots[backend_slot_compat()];
	if (!my_slot_held)
	{
		my_slot->dboid = MyDatabaseId;
		my_slot->low = first_position;
		my_slot_held = true;
	}
	LWLockRelease(horizon->lock);
}

/*
 * Take a snapshot for a gap-safe read and the horizon that goes with it:
 * positions >= *horizon may belong to transactions still open.  Our own open
 * transaction does not hold back our own reads.  The snapshot is registered;
 * the caller unregisters it.  Only with preload (horizon_enabled()).
 */
Snapshot
horizon_snapshot(int64 *result)
{
	int64		low = PG_INT64_MAX;
	Snapshot	snap;
	int			i;

	Assert(horizon != NULL);

	LWLockAcquire(horizon->lock, LW_EXCLUSIVE);
	for (i = 0; i < horizon->nslots; i++)
	{
		HorizonSlot *slot = &horizon->slots[i];

		if (slot->low != 0 && slot->dboid == MyDatabaseId &&
			slot != my_slot && slot->low < low)
			low = slot->low;
	}
	snap = RegisterSnapshot(GetLatestSnapshot());
	LWLockRelease(horizon->lock);

	*result = low;
	return snap;
}

/*
 * Clear our slot once the transaction's outcome is visible to everybody;
 * refuse two-phase commit, which would leave positions open behind our back.
 */
void
horizon_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (my_slot_held)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that has appended events"),
						 errdetail("Gap-safe reads cannot wait for prepared transactions.")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			if (my_slot_held)
			{
				LWLockAcquire(horizon->lock, LW_SHARED);
				my_slot->low = 0;
				LWLockRelease(horizon->lock);
				my_slot_held = false;
			}
			break;
		default:
			break;
	}
}
