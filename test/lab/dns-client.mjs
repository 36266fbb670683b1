#!/usr/bin/env node
// A DNS client for L7 tests: resolves a fixed list of names through the lab's DNS
// server with Node's resolver (c-ares, over UDP). Prints a JSON summary of what it
// asked and what it got: the client's own view, to compare with spans and the
// server's log.
//
//   ip netns exec tdlab-client node test/lab/dns-client.mjs --server 198.18.0.50

import { Resolver } from 'node:dns/promises';
import { parseArgs } from 'node:util';

const { values: opts } = parseArgs({
  options: { server: { type: 'string', default: '198.18.0.50' }, rounds: { type: 'string', default: '2' } },
  strict: true,
});

const QUERIES = [
  ['svca.tdlab.test', 'A'],
  ['multi.tdlab.test', 'A'],
  ['svcb.tdlab.test', 'AAAA'],
  ['nope.tdlab.test', 'A'],
  ['servfail.tdlab.test', 'A'],
];
// c-ares error codes for the answers the server gives.
const RCODE_OF = { ENOTFOUND: 'NXDOMAIN', ESERVFAIL: 'SERVFAIL', ENODATA: 'NOERROR', EREFUSED: 'REFUSED' };

const resolver = new Resolver({ timeout: 2000, tries: 1 });
resolver.setServers([opts.server]);
const results = [];
const t0 = Date.now();
for (let round = 0; round < Math.min(Number(opts.rounds), 50) && Date.now() - t0 < 20_000; round++) {
  for (const [name, type] of QUERIES) {
    try {
      const addrs = type === 'A' ? await resolver.resolve4(name) : await resolver.resolve6(name);
      results.push({ name, type, rcode: 'NOERROR', answers: addrs.length });
    } catch (err) {
      const code = /** @type {{code?: string}} */ (err).code ?? 'unknown';
      results.push({ name, type, rcode: RCODE_OF[code] ?? code, answers: 0 });
    }
  }
}
process.stdout.write(`${JSON.stringify({ pid: process.pid, results })}\n`);
process.exit(0);
