// The collector attached for real (root, eBPF) to clients of the lab's data services
// in tdlab-data: DNS over UDP (Node's c-ares resolver), Redis (redis-cli, one command
// at a time and pipelined with --pipe) and PostgreSQL (psql's simple protocol, npm
// pg's extended protocol). Each exchange must come out as one span with the right
// fields. Ground truth: the clients' own counts and the servers' own records (the DNS
// server's query log, Redis's INFO commandstats, PostgreSQL's log_statement=all log).

import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FrameDecoder, type Frame } from '../../main/ingest/frames.ts';
import { APP_ROOT } from '../../main/paths.ts';
import { COLLECTOR_BIN, isRoot, labDown, labUp, type Lab } from '../support/lab.ts';

type Span = Record<string, unknown>;

interface LabData extends Lab {
  LAB_DATA_ADDR: string;
  LAB_DATA_NS: string;
  LAB_REDIS_PORT: string;
  LAB_PG_PORT: string;
  LAB_PG_DB: string;
  LAB_PG_LOG: string;
  LAB_DNS_LOG: string;
}

interface Collector {
  child: ChildProcessWithoutNullStreams;
  frames: Frame[];
  stderr: string;
  exited: Promise<number | null>;
}

function startCollector(args: string[]): Collector {
  const child = spawn(COLLECTOR_BIN, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const decoder = new FrameDecoder();
  const c: Collector = {
    child,
    frames: [],
    stderr: '',
    exited: new Promise((r) => child.on('close', (code) => r(code))),
  };
  child.stdout.on('data', (d: Buffer) => c.frames.push(...decoder.push(d)));
  child.stderr.on('data', (d: Buffer) => (c.stderr += d.toString()));
  return c;
}

async function until(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Starts `sh -c script` in the client namespace, blocked on its first stdin line; the
 * collector traces its pid (and so every process it starts); then the script runs.
 * Resolves with the script's stdout and the spans, once the collector has exited.
 */
async function traced(lab: LabData, script: string): Promise<{ out: string; spans: Span[]; stats: Span; hello: Span }> {
  const client = spawn('ip', ['netns', 'exec', lab.LAB_CLIENT_NS, 'sh', '-c', `read go; ${script}`], {
    stdio: ['pipe', 'pipe', 'pipe'],
    cwd: APP_ROOT,
  });
  let out = '';
  let err = '';
  client.stdout.on('data', (d: Buffer) => (out += d.toString()));
  client.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const done = new Promise<number | null>((r) => client.on('close', (code) => r(code)));
  const col = startCollector(['--process', String(client.pid), '--duration', '60s']);
  try {
    await until('hello', () => col.frames.some((f) => f.type === 'hello'));
    await until('the client in the kernel filter', () => col.frames.some((f) => f.type === 'process'));
    await new Promise((r) => setTimeout(r, 200));
    client.stdin.write('go\n');
    const timer = setTimeout(() => client.kill('SIGKILL'), 60_000);
    const code = await done;
    clearTimeout(timer);
    expect(code, `client script failed: ${err}`).toBe(0);
    await new Promise((r) => setTimeout(r, 500));
  } finally {
    col.child.stdin.end();
  }
  expect(await col.exited, col.stderr).toBe(0);
  const spans = col.frames.filter((f) => f.type === 'span').map((f) => f.body);
  const stats = col.frames.filter((f) => f.type === 'stats').at(-1)?.body ?? {};
  const hello = col.frames.find((f) => f.type === 'hello')?.body ?? {};
  return { out, spans, stats, hello };
}

function count<T>(items: T[], key: (t: T) => string): Record<string, number> {
  const m: Record<string, number> = {};
  for (const t of items) m[key(t)] = (m[key(t)] ?? 0) + 1;
  return m;
}

/** `cmdstat_<name>` → {calls, failed} from Redis's INFO commandstats. */
function commandStats(lab: LabData): Record<string, { calls: number; failed: number }> {
  const info = execFileSync(
    'ip',
    [
      'netns',
      'exec',
      lab.LAB_DATA_NS,
      'redis-cli',
      '-h',
      lab.LAB_DATA_ADDR,
      '-p',
      lab.LAB_REDIS_PORT,
      'INFO',
      'commandstats',
    ],
    { encoding: 'utf8', timeout: 10_000 },
  );
  const stats: Record<string, { calls: number; failed: number }> = {};
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),.*?failed_calls=(\d+)/gm)) {
    stats[m[1]!] = { calls: Number(m[2]), failed: Number(m[3]) };
  }
  return stats;
}

function psqlAdmin(lab: LabData, sql: string): string {
  return execFileSync(
    'ip',
    [
      'netns',
      'exec',
      lab.LAB_DATA_NS,
      'psql',
      '-X',
      '-qAt',
      '-v',
      'ON_ERROR_STOP=1',
      '-h',
      lab.LAB_DATA_ADDR,
      '-p',
      lab.LAB_PG_PORT,
      '-U',
      'postgres',
      '-d',
      lab.LAB_PG_DB,
      '-c',
      sql,
    ],
    { encoding: 'utf8', timeout: 10_000 },
  );
}

describe.skipIf(!isRoot)('collector: DNS, Redis and PostgreSQL spans from lab clients (root, eBPF)', () => {
  let lab: LabData;
  let dir: string;
  beforeAll(() => {
    if (!existsSync(COLLECTOR_BIN)) throw new Error(`${COLLECTOR_BIN} is missing: run npm run build:collector`);
    lab = labUp() as LabData;
    dir = mkdtempSync(join(tmpdir(), 'tapdeck-l7-'));
  });
  afterAll(() => {
    labDown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('DNS over UDP: one span per query, as the client and the server saw it', async () => {
    writeFileSync(lab.LAB_DNS_LOG, '');
    const { out, spans, stats, hello } = await traced(
      lab,
      `${process.execPath} test/lab/dns-client.mjs --server ${lab.LAB_DATA_ADDR} --rounds 2`,
    );
    const client = JSON.parse(out) as { results: { name: string; type: string; rcode: string; answers: number }[] };
    const server = readFileSync(lab.LAB_DNS_LOG, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { name: string; type: string; rcode: string; answers: number });
    const dns = spans.filter((s) => s['l7_protocol'] === 'DNS');
    expect(hello['capabilities']).toMatchObject({ dns: true, redis: true, postgresql: true });
    expect(client.results).toHaveLength(10);
    expect(server).toHaveLength(10);
    expect(dns, JSON.stringify(stats)).toHaveLength(10);

    const rcodes: Record<string, number> = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3 };
    const key = (x: { name: string; type: string; rcode: string; answers: number }) =>
      `${x.name} ${x.type} ${x.rcode} ${x.answers}`;
    const fromSpans = count(dns, (s) => {
      const code = s['response_code'] as number;
      const rcode = Object.keys(rcodes).find((k) => rcodes[k] === code) ?? String(code);
      const answers = (s['attributes'] as { answers?: number } | null)?.answers ?? -1;
      return `${String(s['request_resource'])} ${String(s['request_type'])} ${rcode} ${answers}`;
    });
    expect(fromSpans).toEqual(count(client.results, key));
    expect(fromSpans).toEqual(count(server, key));
    for (const s of dns) {
      expect(s).toMatchObject({
        signal_source: 'ebpf',
        observation_point: 'c-p',
        l4_protocol: 'UDP',
        server_ip: lab.LAB_DATA_ADDR,
        server_port: 53,
        client_ip: '198.18.0.10',
        process_name: 'node',
        request_domain: s['request_resource'],
        endpoint: s['request_resource'],
      });
      const status = { 0: 'ok', 3: 'client_error', 2: 'server_error' }[s['response_code'] as 0 | 2 | 3];
      expect(s['response_status']).toBe(status);
      expect(s['response_exception']).toBe(
        s['response_code'] === 0 ? null : s['response_code'] === 3 ? 'NXDOMAIN' : 'SERVFAIL',
      );
      expect(s['duration_us']).toBeGreaterThan(0);
    }
  });

  it("DNS through glibc's resolver: A and AAAA sent with one sendmmsg, as the server saw them", async () => {
    writeFileSync(lab.LAB_DNS_LOG, '');
    // tdlab-client's resolv.conf points at the lab DNS server. getaddrinfo without
    // AI_ADDRCONFIG asks for A and AAAA at once: glibc sends both with one sendmmsg
    // and reads the answers with recvfrom.
    const py = (name: string) =>
      `python3 -c "import socket,sys\ntry: print(sorted({a[4][0] for a in socket.getaddrinfo('${name}', 80, proto=socket.IPPROTO_TCP)}))\nexcept socket.gaierror as e: print('${name}', e.errno)"`;
    const { out, spans } = await traced(lab, `${py('svca.tdlab.test')}; ${py('nope.tdlab.test')}`);
    expect(out).toContain('198.18.0.30');
    expect(out).toContain(`nope.tdlab.test ${-2}`); // EAI_NONAME
    const server = readFileSync(lab.LAB_DNS_LOG, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { name: string; type: string; rcode: string });
    const dns = spans.filter((s) => s['l7_protocol'] === 'DNS');
    const key = (name: unknown, type: unknown, rcode: unknown) => `${String(name)} ${String(type)} ${String(rcode)}`;
    const rcodeName = (c: unknown) => (c === 0 ? 'NOERROR' : c === 3 ? 'NXDOMAIN' : String(c));
    expect(count(dns, (s) => key(s['request_resource'], s['request_type'], rcodeName(s['response_code'])))).toEqual(
      count(server, (q) => key(q.name, q.type, q.rcode)),
    );
    expect(count(server, (q) => key(q.name, q.type, q.rcode))).toMatchObject({
      'svca.tdlab.test A NOERROR': 1,
      'svca.tdlab.test AAAA NOERROR': 1,
      'nope.tdlab.test A NXDOMAIN': 1,
      'nope.tdlab.test AAAA NXDOMAIN': 1,
    });
    for (const s of dns) {
      expect(s).toMatchObject({ process_name: 'python3', l4_protocol: 'UDP', server_port: 53 });
    }
  });

  it('Redis: one span per command, one at a time and pipelined, errors included', async () => {
    const oneByOne = [
      'SET user:1 alice',
      'GET user:1',
      'LPUSH queue a b c',
      'LRANGE queue 0 -1',
      'INCR counter',
      'LPUSH user:1 x', // WRONGTYPE
      'HSET h f v',
      'HGET h f',
      'GET missing',
      `SET big:1 ${'x'.repeat(10_000)}`, // beyond the 4096-byte copy cap, in one write
      'GET big:1',
    ];
    // Small enough that the whole pipeline fits in what the collector copies of a write.
    const pipelined = [['SET', 'p:1', 'x'], ['GET', 'p:1'], ['INCR', 'user:1'], ['DEL', 'p:1'], ['PING']];
    for (let i = 0; i < 20; i++) pipelined.push(['INCR', `n:${i % 3}`]);
    const resp = pipelined
      .map((args) => `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`)
      .join('');
    writeFileSync(join(dir, 'redis-commands.txt'), `${oneByOne.join('\n')}\n`);
    writeFileSync(join(dir, 'redis-pipe.resp'), resp);
    const before = commandStats(lab);
    const r = `redis-cli -h ${lab.LAB_DATA_ADDR} -p ${lab.LAB_REDIS_PORT}`;
    const { out, spans, stats } = await traced(
      lab,
      `${r} < ${dir}/redis-commands.txt > /dev/null; ${r} --pipe < ${dir}/redis-pipe.resp || true`,
    );
    const after = commandStats(lab);

    // The client's own count of the pipelined part.
    const pipe = /errors: (\d+), replies: (\d+)/.exec(out);
    expect(pipe, out).not.toBeNull();
    expect(Number(pipe![2])).toBe(pipelined.length);
    expect(Number(pipe![1])).toBe(1); // INCR on a string that is not a number

    const redis = spans.filter((s) => s['l7_protocol'] === 'Redis');
    // The server's count, command by command (INFO itself came from an untraced client).
    const delta: Record<string, { calls: number; failed: number }> = {};
    for (const [name, v] of Object.entries(after)) {
      const calls = v.calls - (before[name]?.calls ?? 0);
      const failed = v.failed - (before[name]?.failed ?? 0);
      const cmd = name.split('|')[0]!.toUpperCase();
      if (cmd === 'INFO' || calls === 0) continue;
      delta[cmd] = { calls: (delta[cmd]?.calls ?? 0) + calls, failed: (delta[cmd]?.failed ?? 0) + failed };
    }
    const fromSpans: Record<string, { calls: number; failed: number }> = {};
    for (const s of redis) {
      const cmd = s['request_type'] as string;
      fromSpans[cmd] ??= { calls: 0, failed: 0 };
      fromSpans[cmd].calls++;
      if (s['response_status'] === 'server_error') fromSpans[cmd].failed++;
    }
    expect(fromSpans, JSON.stringify(stats)).toEqual(delta);
    expect(delta['INCR']).toEqual({ calls: 22, failed: 1 });

    const wrongType = redis.filter((s) => s['request_resource'] === 'LPUSH user:1');
    expect(wrongType).toHaveLength(1);
    expect(wrongType[0]).toMatchObject({ response_status: 'server_error', response_code: null });
    expect(wrongType[0]!['response_exception']).toMatch(/^WRONGTYPE Operation against a key holding the wrong kind/);
    const bigSet = redis.find((s) => s['request_resource'] === 'SET big:1')!;
    expect(bigSet['request_length']).toBe('*3\r\n$3\r\nSET\r\n$5\r\nbig:1\r\n$10000\r\n\r\n'.length + 10_000);
    expect(bigSet['response_status']).toBe('ok');
    const bigGet = redis.find((s) => s['request_resource'] === 'GET big:1')!;
    expect(bigGet['response_length']).toBe(10_000 + '$10000\r\n\r\n'.length);
    for (const s of redis) {
      expect(s).toMatchObject({
        observation_point: 'c-p',
        l4_protocol: 'TCP',
        server_ip: lab.LAB_DATA_ADDR,
        server_port: 6379,
        process_name: 'redis-cli',
        endpoint: s['request_type'],
      });
      if (s['response_status'] !== 'server_error') expect(s['response_status']).toBe('ok');
    }
  });

  it('PostgreSQL: simple and extended round trips, statement text and SQLSTATE errors', async () => {
    psqlAdmin(lab, 'DROP TABLE IF EXISTS items; CREATE TABLE items (id int PRIMARY KEY, name text)');
    const simple = [
      'SELECT count(*) FROM items;',
      "INSERT INTO items(id, name) VALUES (100, 'simple');",
      "INSERT INTO items(id, name) VALUES (100, 'dup');",
      'SELEC 1;',
      "UPDATE items SET name = 'renamed' WHERE id = 100;",
      'SELECT id, name FROM items ORDER BY id;',
    ];
    writeFileSync(join(dir, 'simple.sql'), `${simple.join('\n')}\n`);
    const logFrom = statSync(lab.LAB_PG_LOG).size;
    const psql = `psql -X -q -h ${lab.LAB_DATA_ADDR} -p ${lab.LAB_PG_PORT} -U postgres -d ${lab.LAB_PG_DB} -v ON_ERROR_STOP=0 -f ${dir}/simple.sql`;
    const node = `${process.execPath} test/lab/pg-client.mjs --host ${lab.LAB_DATA_ADDR} --db ${lab.LAB_PG_DB} --count 5`;
    const { out, spans, stats } = await traced(lab, `${psql} > /dev/null 2>&1; ${node}`);
    const client = JSON.parse(out) as { sent: { kind: string; text: string }[]; errors: { code: string }[] };
    const log = readFileSync(lab.LAB_PG_LOG, 'utf8').slice(logFrom);

    const pg = spans.filter((s) => s['l7_protocol'] === 'PostgreSQL');
    const fromPsql = pg.filter((s) => s['process_name'] === 'psql');
    const fromNode = pg.filter((s) => s['process_name'] === 'node');
    expect(pg.length, JSON.stringify(stats)).toBe(fromPsql.length + fromNode.length);

    // Simple protocol: one QUERY span per statement psql sent, the text the server
    // logged: `statement:` lines, and for a statement that did not parse, the
    // `STATEMENT:` line after its error (log_statement logs only what parsed).
    const psqlPid = / \[(\d+)\] \S+ LOG: {2}statement: /.exec(log)?.[1];
    const logged: string[] = [];
    for (const m of log.matchAll(/ \[(\d+)\] \S+ (LOG: {2}statement|STATEMENT): {1,2}(.*)$/gm)) {
      if (m[1] !== psqlPid) continue;
      if (m[2] === 'STATEMENT' && logged.at(-1) === m[3]) continue;
      logged.push(m[3]!);
    }
    expect(logged).toHaveLength(simple.length);
    expect(fromPsql.map((s) => s['request_resource'])).toEqual(logged);
    expect(fromPsql.every((s) => s['request_type'] === 'QUERY' && s['request_domain'] === lab.LAB_PG_DB)).toBe(true);
    expect(fromPsql.map((s) => s['response_status'])).toEqual(['ok', 'ok', 'client_error', 'client_error', 'ok', 'ok']);
    expect(fromPsql[2]!['response_exception']).toBe(
      '23505: duplicate key value violates unique constraint "items_pkey"',
    );
    expect(fromPsql[3]!['response_exception']).toBe('42601: syntax error at or near "SELEC"');
    expect(fromPsql[0]).toMatchObject({ endpoint: 'SELECT', response_code: null, attributes: { rows: 1 } });

    // Extended protocol: one span per Sync round trip; a named statement is parsed once.
    expect(
      fromNode,
      JSON.stringify([
        stats,
        fromNode.map((s) => [s['request_type'], s['request_resource'], s['response_status'], s['response_exception']]),
      ]),
    ).toHaveLength(client.sent.length);
    expect(count(fromNode, (s) => String(s['request_type']))).toEqual({ PARSE: 8, BIND: 4 });
    expect(fromNode.map((s) => s['request_resource'])).toEqual(client.sent.map((q) => q.text));
    const executed = [...log.matchAll(/ LOG: {2}execute ([^:]+): (.*)$/gm)].map((m) => `${m[1]}: ${m[2]}`);
    expect(executed.filter((e) => e.startsWith('<unnamed>: INSERT'))).toHaveLength(6);
    expect(executed.filter((e) => e.startsWith('get_item: SELECT'))).toHaveLength(5);
    const failed = fromNode.filter((s) => s['response_status'] !== 'ok');
    expect(failed.map((s) => String(s['response_exception']).slice(0, 5))).toEqual(client.errors.map((e) => e.code));
    expect(client.errors.map((e) => e.code)).toEqual(['23505', '42601']);
    for (const s of pg) {
      expect(s).toMatchObject({
        observation_point: 'c-p',
        l4_protocol: 'TCP',
        server_ip: lab.LAB_DATA_ADDR,
        server_port: 5432,
        request_domain: lab.LAB_PG_DB,
      });
      expect(s['end_time_us']).toBeGreaterThanOrEqual(s['start_time_us'] as number);
    }
  });
});
