#!/usr/bin/env node
// The lab's DNS server: a tiny authoritative responder for tdlab.test over UDP,
// built on dns-packet (npm). Ground truth for DNS tests: one JSON line per query
// in the log file (id, name, type, rcode, answers).
//
//   node test/lab/dns.mjs --listen 198.18.0.50:53 --log STATE/dns.log --pid-file STATE/dns.pid
//
// Zone tdlab.test (A records; AAAA queries get an empty NOERROR answer):
//   gw, client, svca, svcb, data   their lab addresses
//   multi                          three A records
//   servfail                       SERVFAIL (a zone that is broken on purpose)
//   anything else in the zone      NXDOMAIN
// Names outside the zone are REFUSED (this server does not recurse).

import dgram from 'node:dgram';
import { createWriteStream, rmSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import dnsPacket from 'dns-packet';

const { values: opts } = parseArgs({
  options: {
    listen: { type: 'string', default: '198.18.0.50:53' },
    log: { type: 'string', default: '' },
    'pid-file': { type: 'string', default: '' },
  },
  strict: true,
});

const ZONE = 'tdlab.test';
const RECORDS = {
  'gw.tdlab.test': ['198.18.0.20'],
  'client.tdlab.test': ['198.18.0.10'],
  'svca.tdlab.test': ['198.18.0.30'],
  'svcb.tdlab.test': ['198.18.0.40'],
  'data.tdlab.test': ['198.18.0.50'],
  'multi.tdlab.test': ['198.18.0.30', '198.18.0.40', '198.18.0.50'],
};

const RCODES = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 };

const log = opts.log ? createWriteStream(opts.log, { flags: 'a' }) : null;
const [host, port] = opts.listen.split(/:(?=\d+$)/);

function answer(q) {
  const name = q.name.toLowerCase();
  if (name !== ZONE && !name.endsWith(`.${ZONE}`)) return { rcode: 'REFUSED', answers: [] };
  if (name === `servfail.${ZONE}`) return { rcode: 'SERVFAIL', answers: [] };
  const addrs = RECORDS[name];
  if (!addrs) return { rcode: 'NXDOMAIN', answers: [] };
  if (q.type !== 'A') return { rcode: 'NOERROR', answers: [] };
  return { rcode: 'NOERROR', answers: addrs.map((data) => ({ type: 'A', name: q.name, ttl: 60, data })) };
}

const sock = dgram.createSocket('udp4');
sock.on('message', (msg, rinfo) => {
  let query;
  try {
    query = dnsPacket.decode(msg);
  } catch {
    log?.write(`${JSON.stringify({ time: Date.now(), error: 'undecodable query', bytes: msg.length })}\n`);
    return;
  }
  const q = query.questions?.[0];
  const { rcode, answers } = q ? answer(q) : { rcode: 'FORMERR', answers: [] };
  // dns-packet encodes the rcode from the low 4 bits of flags.
  const flags = dnsPacket.AUTHORITATIVE_ANSWER | (query.flags & dnsPacket.RECURSION_DESIRED) | RCODES[rcode];
  const reply = dnsPacket.encode({ type: 'response', id: query.id, flags, rcode, questions: query.questions, answers });
  sock.send(reply, rinfo.port, rinfo.address);
  log?.write(
    `${JSON.stringify({ time: Date.now(), id: query.id, name: q?.name ?? null, type: q?.type ?? null, rcode, answers: answers.length })}\n`,
  );
});
sock.bind(Number(port), host, () => {
  if (opts['pid-file']) writeFileSync(opts['pid-file'], `${process.pid}\n`);
});

function stop() {
  if (opts['pid-file']) rmSync(opts['pid-file'], { force: true });
  sock.close();
  log?.end(() => process.exit(0));
  if (!log) process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
