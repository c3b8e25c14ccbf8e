'use strict';
// The es bank-account story as a small Node.js service with node-postgres.
//
// A command handler loads the account (es.read_stream), decides (the account
// must be open, an amount positive), and appends with the version it loaded
// (es.try_append); a NULL answer means someone else appended meanwhile, so it
// loads again and retries.  A query reads the balance from an async
// projection, after es.wait_for_projection, so that a client sees its own
// deposit (read-your-writes).
//
// Several workers deposit into one account at once; at the end the balance
// (folded from the events and read from the projection) must equal the sum
// of the deposits: the process exits 1 otherwise.
//
// Connection: the usual libpq variables (PGHOST, PGPORT, PGDATABASE, PGUSER,
// PGPASSWORD).  Settings: WORKERS (default 8), DEPOSITS per worker (25).

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const { Pool } = require('pg');

const WORKERS = Number(process.env.WORKERS || 8);
const DEPOSITS = Number(process.env.DEPOSITS || 25);
const PROJECTION = 'bank_node_balances';

const pool = new Pool({ max: WORKERS + 1 });

// Events, as es.read_stream returns them, folded into the account's state.
// node-postgres returns bigint (int8) columns as strings: stream_version
// arrives as '7', not 7.  Versions stay far below 2^53, so Number() is exact.
function evolve(state, e) {
  switch (e.event_type) {
    case 'AccountOpened':
      return { ...state, open: true, owner: e.data.owner };
    case 'MoneyDeposited':
      return { ...state, balance: state.balance + e.data.amount };
    default:
      return state;
  }
}

async function load(client, account) {
  const { rows } = await client.query(
    'SELECT stream_version, event_type, data FROM es.read_stream($1)', [account]);
  let state = { open: false, balance: 0, version: 0 };
  for (const row of rows) {
    state = evolve(state, row);
    state.version = Number(row.stream_version);
  }
  return state;
}

// Appends the events if the stream is still at `version`: the new version,
// or null when it is not (nothing written, no error, nothing logged).
// An es.new_event[] is built in SQL from parameters: node-postgres has no
// way to send an array of a composite type, but es.new_event(...) inside
// ARRAY[...] takes plain text, jsonb and uuid parameters.
async function tryAppend(client, account, type, data, eventId, version) {
  const { rows } = await client.query(
    `SELECT es.try_append($1, ARRAY[es.new_event($2, $3::jsonb, event_id => $4::uuid)], $5)
       AS version`,
    [account, type, JSON.stringify(data), eventId, version]);
  return rows[0].version === null ? null : Number(rows[0].version);
}

async function openAccount(account, owner) {
  const client = await pool.connect();
  try {
    const v = await tryAppend(client, account, 'AccountOpened', { owner },
                              crypto.randomUUID(), 0);
    if (v === null) throw new Error(`account ${account} already exists`);
    return v;
  } finally {
    client.release();
  }
}

// The command: deposit `amount`.  Returns { version, conflicts }.
async function deposit(account, amount) {
  if (!(amount > 0)) throw new Error('a deposit must be positive');
  // One id per command: should the connection drop after the append
  // committed, sending the same event again is a no-op (es idempotency).
  const eventId = crypto.randomUUID();
  const client = await pool.connect();
  let conflicts = 0;
  try {
    for (;;) {
      const state = await load(client, account);
      if (!state.open) throw new Error(`account ${account} is not open`);
      const v = await tryAppend(client, account, 'MoneyDeposited', { amount },
                                eventId, state.version);
      if (v !== null) return { version: v, conflicts };
      conflicts++;   // someone appended since we loaded: load and decide again
    }
  } finally {
    client.release();
  }
}

// The query: the projected balance, once the projection has applied every
// append committed so far (ours included).  Two statements: a statement
// reads with the snapshot it started with, so a read in the statement that
// waits would not see what the projector wrote meanwhile.
async function balance(account) {
  const client = await pool.connect();
  try {
    const wait = await client.query(
      "SELECT es.wait_for_projection($1, NULL, '10 seconds') AS caught_up", [PROJECTION]);
    if (!wait.rows[0].caught_up) throw new Error('the projection did not catch up in time');
    const { rows } = await client.query(
      'SELECT balance, version FROM bank_node.balances WHERE account = $1', [account]);
    if (rows.length === 0) return { balance: 0, version: 0 };
    // numeric and bigint arrive as strings too
    return { balance: Number(rows[0].balance), version: Number(rows[0].version) };
  } finally {
    client.release();
  }
}

async function worker(id, account, totals) {
  for (let i = 0; i < DEPOSITS; i++) {
    const amount = 1 + ((id * 31 + i * 7) % 50);
    const { version, conflicts } = await deposit(account, amount);
    totals.sum += amount;
    totals.conflicts += conflicts;
    // read-your-writes: the projection shows at least our own deposit
    if (i % 5 === 4) {
      const seen = await balance(account);
      if (seen.version < version)
        throw new Error(`read-your-writes: projection at ${seen.version} < ${version}`);
    }
  }
}

async function main() {
  await pool.query(fs.readFileSync(path.join(__dirname, 'schema.sql'), 'utf8'));
  const startup = await pool.query(
    `SELECT es.wait_for_projection($1, NULL, '60 seconds') AS ok`, [PROJECTION]);
  if (!startup.rows[0].ok) throw new Error('the projection is not running');

  const account = `account-node-${crypto.randomUUID()}`;
  await openAccount(account, 'Alice');
  const totals = { sum: 0, conflicts: 0 };
  const started = Date.now();
  await Promise.all(Array.from({ length: WORKERS }, (_, id) => worker(id, account, totals)));

  const client = await pool.connect();
  const folded = await load(client, account);
  client.release();
  const projected = await balance(account);
  const expectedVersion = 1 + WORKERS * DEPOSITS;
  console.log(`${account}: ${WORKERS} workers x ${DEPOSITS} deposits in ${Date.now() - started} ms, ` +
              `${totals.conflicts} conflicts retried`);
  console.log(`deposited ${totals.sum}, folded ${folded.balance} at version ${folded.version}, ` +
              `projected ${projected.balance} at version ${projected.version}`);
  const ok = folded.balance === totals.sum && projected.balance === totals.sum &&
             folded.version === expectedVersion && projected.version === expectedVersion;
  console.log(ok ? 'ok' : 'MISMATCH');
  return ok;
}

main()
  .then((ok) => pool.end().then(() => process.exit(ok ? 0 : 1)))
  .catch((err) => {
    console.error(`error: ${err.message}${err.code ? ` (SQLSTATE ${err.code})` : ''}`);
    pool.end().finally(() => process.exit(1));
  });
