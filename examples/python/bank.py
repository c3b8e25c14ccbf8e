#!/usr/bin/env python3
"""The es bank-account story as a small Python service with psycopg2.

A command handler loads the account (es.fold with the reducer
bank_py.apply), decides (the account must be open, an amount positive), and
appends with the version it loaded (es.try_append); a NULL answer (None)
means someone else appended meanwhile, so it loads again and retries.  One
worker instead uses es.append and catches ES001, the error style.  A query
reads the balance from an async projection after es.wait_for_projection, so
that a client sees its own deposit (read-your-writes).

Several worker threads deposit into one account at once; at the end the
balance (folded and projected) must equal the sum of the deposits: exit
status 1 otherwise.

Connection: the usual libpq variables (PGHOST, PGPORT, PGDATABASE, PGUSER,
PGPASSWORD).  Settings: WORKERS (default 8), DEPOSITS per worker (25).
"""

import os
import sys
import threading
import time
import uuid

import psycopg2
import psycopg2.extras

WORKERS = int(os.environ.get("WORKERS", "8"))
DEPOSITS = int(os.environ.get("DEPOSITS", "25"))
PROJECTION = "bank_py_balances"
HERE = os.path.dirname(os.path.abspath(__file__))

psycopg2.extras.register_uuid()   # pass uuid.UUID values as uuid


def connect():
    # autocommit: every statement is its own transaction, as in most
    # services; a retry then reloads with a fresh snapshot.
    conn = psycopg2.connect("")
    conn.autocommit = True
    return conn


def load(cur, account):
    """The account's state, folded in the database: {"version", "open", "balance"}."""
    cur.execute("SELECT es.fold(%s, 'bank_py.apply(jsonb, es.event)', "
                "'{\"version\": 0, \"open\": false, \"balance\": 0}')", (account,))
    return cur.fetchone()[0]        # jsonb arrives as a dict


def try_append(cur, account, event_type, data, event_id, version):
    """The new version, or None when the stream is not at `version`."""
    # An es.new_event[] built in SQL from parameters; psycopg2 adapts the
    # dict with Json, the UUID with register_uuid, and None as NULL.
    cur.execute("SELECT es.try_append(%s, ARRAY[es.new_event(%s, %s, event_id => %s)], %s)",
                (account, event_type, psycopg2.extras.Json(data), event_id, version))
    return cur.fetchone()[0]        # bigint arrives as int, NULL as None


def deposit(cur, account, amount):
    """The command, with try_append: returns (version, conflicts)."""
    if amount <= 0:
        raise ValueError("a deposit must be positive")
    event_id = uuid.uuid4()   # one id per command: a resend is a no-op
    conflicts = 0
    while True:
        state = load(cur, account)
        if not state["open"]:
            raise ValueError(f"account {account} is not open")
        version = try_append(cur, account, "MoneyDeposited", {"amount": amount},
                             event_id, state["version"])
        if version is not None:
            return version, conflicts
        conflicts += 1        # someone appended since we loaded: again


def deposit_raising(cur, account, amount):
    """The same command with es.append: a conflict is an error, ES001."""
    event_id = uuid.uuid4()
    conflicts = 0
    while True:
        state = load(cur, account)
        if not state["open"]:
            raise ValueError(f"account {account} is not open")
        try:
            cur.execute("SELECT es.append(%s, ARRAY[es.new_event(%s, %s, event_id => %s)], %s)",
                        (account, "MoneyDeposited", psycopg2.extras.Json({"amount": amount}),
                         event_id, state["version"]))
            return cur.fetchone()[0], conflicts
        except psycopg2.DatabaseError as e:
            # ES001 is no standard SQLSTATE class: psycopg2 raises a plain
            # DatabaseError (no subclass), told apart by its pgcode.
            if e.pgcode != "ES001":
                raise
            if type(e) is not psycopg2.DatabaseError:
                raise AssertionError(f"ES001 came as {type(e).__name__}")
            conflicts += 1


def balance(cur, account):
    """The query: the projected (balance, version), read-your-writes."""
    cur.execute("SELECT es.wait_for_projection(%s, NULL, '10 seconds')", (PROJECTION,))
    if not cur.fetchone()[0]:
        raise RuntimeError("the projection did not catch up in time")
    cur.execute("SELECT balance, version FROM bank_py.balances WHERE account = %s", (account,))
    row = cur.fetchone()
    return (row[0], row[1]) if row else (0, 0)   # numeric arrives as Decimal


def worker(n, account, totals, lock, errors):
    try:
        conn = connect()
        with conn.cursor() as cur:
            command = deposit_raising if n == 0 else deposit
            for i in range(DEPOSITS):
                amount = 1 + (n * 31 + i * 7) % 50
                version, conflicts = command(cur, account, amount)
                with lock:
                    totals["sum"] += amount
                    totals["conflicts"] += conflicts
                if i % 5 == 4:
                    _, seen = balance(cur, account)
                    if seen < version:
                        raise AssertionError(f"read-your-writes: projection at {seen} < {version}")
        conn.close()
    except Exception as e:        # reported by main
        errors.append(f"worker {n}: {type(e).__name__}: {e}")


def main():
    conn = connect()
    cur = conn.cursor()
    with open(os.path.join(HERE, "schema.sql")) as f:
        cur.execute(f.read())
    cur.execute("SELECT es.wait_for_projection(%s, NULL, '60 seconds')", (PROJECTION,))
    if not cur.fetchone()[0]:
        print("error: the projection is not running", file=sys.stderr)
        return 1

    account = f"account-py-{uuid.uuid4()}"
    if try_append(cur, account, "AccountOpened", {"owner": "Bob"}, uuid.uuid4(), 0) is None:
        print(f"error: {account} already exists", file=sys.stderr)
        return 1

    totals = {"sum": 0, "conflicts": 0}
    lock = threading.Lock()
    errors = []
    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(n, account, totals, lock, errors))
               for n in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1

    folded = load(cur, account)
    projected, projected_version = balance(cur, account)
    expected_version = 1 + WORKERS * DEPOSITS
    print(f"{account}: {WORKERS} workers x {DEPOSITS} deposits in "
          f"{(time.monotonic() - started) * 1000:.0f} ms, {totals['conflicts']} conflicts retried")
    print(f"deposited {totals['sum']}, folded {folded['balance']} at version {folded['version']}, "
          f"projected {projected} at version {projected_version}")
    ok = (folded["balance"] == totals["sum"] and projected == totals["sum"]
          and folded["version"] == expected_version and projected_version == expected_version)
    print("ok" if ok else "MISMATCH")
    conn.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
