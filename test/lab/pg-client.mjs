#!/usr/bin/env node
// A PostgreSQL client for L7 tests that speaks the extended query protocol (npm `pg`:
// parameterised queries are Parse/Bind/Describe/Execute/Sync; a named statement is
// parsed once and then only bound and executed). Prints a JSON summary of its own
// counts: the statements it sent and the SQLSTATE of each error.
//
//   ip netns exec tdlab-client node test/lab/pg-client.mjs --host 198.18.0.50 --db tdlab

import { parseArgs } from 'node:util';
import pg from 'pg';

const { values: opts } = parseArgs({
  options: {
    host: { type: 'string', default: '198.18.0.50' },
    port: { type: 'string', default: '5432' },
    db: { type: 'string', default: 'tdlab' },
    user: { type: 'string', default: 'postgres' },
    table: { type: 'string', default: 'items' },
    count: { type: 'string', default: '5' },
  },
  strict: true,
});
const table = opts.table.replace(/[^a-z0-9_]/g, '');
const count = Math.min(Number(opts.count), 100);

const client = new pg.Client({
  host: opts.host,
  port: Number(opts.port),
  database: opts.db,
  user: opts.user,
  connectionTimeoutMillis: 5000,
  query_timeout: 5000,
});
await client.connect();
const sent = [];
const errors = [];
async function run(kind, q) {
  sent.push({ kind, text: typeof q === 'string' ? q : q.text });
  try {
    return await client.query(q);
  } catch (err) {
    errors.push({ kind, code: /** @type {{code?: string}} */ (err).code ?? 'unknown' });
    return null;
  }
}
// Parameterised (unnamed statement) inserts, then a named statement run `count` times.
for (let i = 1; i <= count; i++) {
  await run('unnamed', { text: `INSERT INTO ${table}(id, name) VALUES ($1, $2)`, values: [i, `item ${i}`] });
}
for (let i = 1; i <= count; i++) {
  await run('named', { name: 'get_item', text: `SELECT name FROM ${table} WHERE id = $1`, values: [i] });
}
// A unique violation (23505) and a syntax error (42601), both through the extended protocol.
await run('unnamed', { text: `INSERT INTO ${table}(id, name) VALUES ($1, $2)`, values: [1, 'again'] });
await run('unnamed', { text: `SELEC name FROM ${table} WHERE id = $1`, values: [1] });
await client.end();
process.stdout.write(`${JSON.stringify({ pid: process.pid, sent, errors })}\n`);
