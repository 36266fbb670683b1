// Packet capture for real (root, AF_PACKET in every lab namespace) next to the eBPF
// syscall capture: known requests go client → gateway → svca, and each must come out
// as N spans on every interface it crossed, with the observation point of that
// interface, linked to the S spans of the same exchange by TCP sequence numbers; each
// connection must come out as L4 flows whose byte counts are curl's own.

import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FrameDecoder, type Frame } from '../../main/ingest/frames.ts';
import { COLLECTOR_BIN, isRoot, labDown, labUp, loadedCollectorPrograms, type Lab } from '../support/lab.ts';

type Body = Record<string, unknown>;

interface Run {
  child: ChildProcessWithoutNullStreams;
  frames: Frame[];
  stderr: string;
  exited: Promise<number | null>;
}

function startCollector(args: string[]): Run {
  const child = spawn(COLLECTOR_BIN, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const decoder = new FrameDecoder();
  const run: Run = { child, frames: [], stderr: '', exited: new Promise((r) => child.on('close', (code) => r(code))) };
  child.stdout.on('data', (d: Buffer) => run.frames.push(...decoder.push(d)));
  child.stderr.on('data', (d: Buffer) => (run.stderr += d.toString()));
  return run;
}

async function until(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface CurlCounts {
  code: number;
  localPort: number;
  /** Bytes curl sent (request head + body) and received (response head + body). */
  sent: number;
  received: number;
}

/** One curl from the client namespace, with curl's own byte counts (`-w`). */
function curlCounts(lab: Lab, url: string, args: string[] = []): CurlCounts {
  // curl exits non-zero when the connection is refused; its -w counts are printed anyway.
  const r = spawnSync(
    'ip',
    [
      'netns',
      'exec',
      lab.LAB_CLIENT_NS,
      'curl',
      '-s',
      '-o',
      '/dev/null',
      '--max-time',
      '10',
      '-w',
      '%{http_code} %{local_port} %{size_request} %{size_header} %{size_download}',
      ...args,
      url,
    ],
    { encoding: 'utf8', timeout: 15_000 },
  );
  const out = r.stdout.trim();
  // size_request counts every byte of the request, body included (--data goes out with the head).
  const [code, port, req, head, down] = out.split(' ').map(Number) as [number, number, number, number, number];
  return { code, localPort: port, sent: req, received: head + down };
}

const bodies = (r: Run, type: Frame['type']): Body[] => r.frames.filter((f) => f.type === type).map((f) => f.body);

describe.skipIf(!isRoot)('packet capture on the lab (root)', () => {
  let lab: Lab;
  let run: Run;
  const sent: (CurlCounts & { xrid: string; path: string })[] = [];
  let refused: CurlCounts;
  let keptAlivePort: number;
  let nsByName: Map<string, number>;

  beforeAll(async () => {
    if (!existsSync(COLLECTOR_BIN)) throw new Error(`${COLLECTOR_BIN} is missing: run npm run build:collector`);
    lab = labUp();
    run = startCollector(['--process', lab.LAB_NGINX_PID, '--signals', 's,n', '--duration', '60s']);
    await until('hello and the namespaces', () => bodies(run, 'netns').length >= 5);
    await new Promise((r) => setTimeout(r, 300));
    const tag = `pk-${Date.now()}`;
    for (let i = 0; i < 20; i++) {
      const xrid = `${tag}-${i}`;
      const path = i % 4 === 3 ? `/api/users/${i}` : `/api/items?id=${i}`;
      const extra = i % 4 === 3 ? ['-X', 'POST', '--data', `{"n":${i},"pad":"${'x'.repeat(i * 50)}"}`] : [];
      const c = curlCounts(lab, `${lab.LAB_GW_URL}${path}`, ['-H', `X-Request-ID: ${xrid}`, ...extra]);
      expect(c.code).toBe(200);
      sent.push({ ...c, xrid, path });
    }
    // One keep-alive connection that lives past an update period (5 s): two requests 6 s apart.
    const script = `const http = require('node:http');
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const get = () => new Promise((ok, ko) => http.get('${lab.LAB_GW_URL}/api/kept', { agent }, (r) => {
        const port = r.socket.localPort; r.resume(); r.on('end', () => ok(port));
      }).on('error', ko));
      (async () => { const p = await get(); await new Promise((r) => setTimeout(r, 6500)); await get();
        console.log(p); agent.destroy(); })();`;
    // Asynchronously: a blocked event loop would stop reading the collector's stdout.
    const ka = await new Promise<{ stdout: string; stderr: string }>((resolve) => {
      const child = spawn('ip', ['netns', 'exec', lab.LAB_CLIENT_NS, process.execPath, '-e', script]);
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('close', () => resolve({ stdout, stderr }));
    });
    keptAlivePort = Number(ka.stdout.trim());
    expect(keptAlivePort, ka.stderr).toBeGreaterThan(0);
    // Nothing listens on :81 of the gateway: the kernel answers the SYN with a reset.
    refused = curlCounts(lab, `http://${lab.LAB_GW_ADDR}:81/`);
    expect(refused.code).toBe(0);
    await new Promise((r) => setTimeout(r, 500));
    run.child.stdin.end();
    expect(await run.exited, run.stderr).toBe(0);
    nsByName = new Map(
      bodies(run, 'netns').flatMap((n) => (n['names'] as string[]).map((name) => [name, n['netns'] as number])),
    );
  });
  afterAll(() => labDown());

  it('describes every lab namespace with its interfaces and addresses, and detaches at the end', () => {
    const client = bodies(run, 'netns').find((n) => (n['names'] as string[]).includes(lab.LAB_CLIENT_NS))!;
    expect(client).toBeDefined();
    const ifs = client['interfaces'] as { name: string; addresses: string[]; kind: string | null }[];
    expect(ifs.find((i) => i.name === 'eth0')).toMatchObject({ kind: 'veth', addresses: ['198.18.0.10'] });
    expect(ifs.some((i) => i.name === 'lo')).toBe(true);
    const host = bodies(run, 'netns').find((n) => n['host'] === true)!;
    const hostIfs = (host['interfaces'] as { name: string }[]).map((i) => i.name);
    expect(hostIfs).toEqual(expect.arrayContaining(['tdlab0', 'tdv-client', 'tdv-gw', 'tdv-svca']));
    expect(loadedCollectorPrograms()).toEqual([]);
    const stats = bodies(run, 'stats').find((s) => s['final'] === true)!;
    const packets = stats['packets'] as Record<string, number>;
    expect(packets['packets_tcp']).toBeGreaterThan(0);
    expect(packets['namespaces']).toBeGreaterThanOrEqual(5);
    expect((stats['drops'] as Record<string, number>)['packet_socket_full']).toBe(0);
  });

  it('emits N spans on every interface each request crossed, with its observation point', () => {
    const n = bodies(run, 'span').filter((s) => s['signal_source'] === 'packet');
    const where = (s: Body) =>
      `${s['netns'] === nsByName.get('tdlab-client') ? 'client:' : s['netns'] === nsByName.get('tdlab-gw') ? 'gw:' : s['netns'] === nsByName.get('tdlab-svca') ? 'svca:' : ''}${String(s['interface'])}=${String(s['observation_point'])}`;
    for (const c of sent) {
      const front = n.filter((s) => s['x_request_id_0'] === c.xrid && s['server_port'] === 80);
      expect(front.map(where).sort(), `client → gateway leg of ${c.xrid}`).toEqual(
        ['client:eth0=c', 'gw:eth0=s', 'tdv-client=c', 'tdv-gw=s'].sort(),
      );
      for (const s of front) {
        expect(s).toMatchObject({
          client_ip: '198.18.0.10',
          client_port: c.localPort,
          server_ip: lab.LAB_GW_ADDR,
          l7_protocol: 'HTTP',
          request_resource: c.path,
          response_code: 200,
          x_request_id_1: c.xrid,
          pid: null,
        });
        expect(s['request_length'] as number).toBe(c.sent);
        expect(s['response_length'] as number).toBe(c.received);
      }
      const up = n.filter((s) => s['x_request_id_0'] === c.xrid && s['server_port'] === 8080);
      expect(up.map(where).sort(), `gateway → svca leg of ${c.xrid}`).toEqual(
        ['gw:eth0=c', 'svca:eth0=s', 'tdv-gw=c', 'tdv-svca=s'].sort(),
      );
    }
  });

  it('links N spans to the S spans of the same exchange by TCP sequence numbers', () => {
    const all = bodies(run, 'span');
    const ours = new Set(sent.map((c) => c.xrid));
    const s = all.filter((x) => x['signal_source'] === 'ebpf' && ours.has(x['x_request_id_0'] as string));
    const n = all.filter((x) => x['signal_source'] === 'packet');
    expect(s.length).toBe(sent.length * 2); // s-p and c-p
    let linked = 0;
    for (const sp of s) {
      const same = n.filter(
        (x) =>
          x['req_tcp_seq'] === sp['req_tcp_seq'] &&
          x['resp_tcp_seq'] === sp['resp_tcp_seq'] &&
          x['client_port'] === sp['client_port'] &&
          x['server_port'] === sp['server_port'],
      );
      if (same.length > 0) linked++;
      expect(same.every((x) => x['x_request_id_0'] === sp['x_request_id_0'])).toBe(true);
    }
    console.log(`S spans with a matching N span (req_tcp_seq, resp_tcp_seq): ${linked}/${s.length}`);
    expect(linked).toBe(s.length);
  });

  it('gives each connection flows whose bytes are what curl sent and received', () => {
    const flows = bodies(run, 'flow').filter((f) => f['signal_source'] === 'packet');
    const clientNs = nsByName.get('tdlab-client');
    for (const c of sent) {
      const fs = flows.filter((f) => f['client_port'] === c.localPort && f['server_port'] === 80);
      const finals = fs.filter((f) => f['final'] === true);
      // one final record per interface: client eth0, tdv-client, tdv-gw, gateway eth0
      expect(finals).toHaveLength(4);
      for (const f of finals) {
        expect(f['byte_tx'], `bytes client → server of ${c.xrid} on ${String(f['interface'])}`).toBe(c.sent);
        expect(f['byte_rx']).toBe(c.received);
        expect(f['connect_latency_us'] as number).toBeGreaterThan(0);
        expect(f['srtt_us'] as number).toBeGreaterThan(0);
        expect(f['close_reason']).toBe('fin');
        expect([f['rst_tx'], f['rst_rx'], f['retrans_tx'], f['retrans_rx']]).toEqual([0, 0, 0, 0]);
      }
      expect(finals.find((f) => f['netns'] === clientNs)).toMatchObject({ interface: 'eth0', observation_point: 'c' });
    }
    // curl reports no local port for a refused connection: find it by the port it tried.
    const rst = flows.filter((f) => f['server_port'] === 81 && f['client_ip'] === '198.18.0.10' && f['final']);
    expect(rst.length).toBeGreaterThanOrEqual(2);
    for (const f of rst) {
      expect(f).toMatchObject({ close_reason: 'server_reset', rst_rx: 1, byte_tx: 0, byte_rx: 0 });
    }
  });

  it('gives each connection a process-side flow at each end from kernel socket events', () => {
    const flows = bodies(run, 'flow').filter((f) => f['signal_source'] === 'ebpf');
    const at = (name: string) => nsByName.get(name);
    for (const c of sent) {
      const mine = flows.filter((f) => f['client_port'] === c.localPort && f['server_port'] === 80);
      const client = mine.filter((f) => f['observation_point'] === 'c-p' && f['netns'] === at('tdlab-client'));
      const server = mine.filter((f) => f['observation_point'] === 's-p' && f['netns'] === at('tdlab-gw'));
      // one record when it opened, the final one when the socket closed
      expect(client.map((f) => f['final'])).toEqual([false, true]);
      expect(server.map((f) => f['final'])).toEqual([false, true]);
      for (const f of [client[1]!, server[1]!]) {
        expect(f, `${String(f['observation_point'])} flow of ${c.xrid}`).toMatchObject({
          client_ip: '198.18.0.10',
          server_ip: lab.LAB_GW_ADDR,
          byte_tx: c.sent,
          byte_rx: c.received,
          close_reason: 'fin',
          rst_tx: 0,
          rst_rx: 0,
          interface: null,
        });
        expect(f['srtt_us'] as number).toBeGreaterThan(0);
        expect(f['flow_id']).toBe(f === client[1] ? client[0]!['flow_id'] : server[0]!['flow_id']);
      }
      expect(client[1]!['connect_latency_us'] as number).toBeGreaterThan(0);
    }
    const refusedFlow = flows.find(
      (f) => f['server_port'] === 81 && f['observation_point'] === 'c-p' && f['netns'] === at('tdlab-client'),
    );
    expect(refusedFlow).toMatchObject({ final: true, close_reason: 'server_reset', rst_rx: 1, byte_tx: 0 });
  });

  it("updates a live connection's socket flow while it lives", () => {
    const client = bodies(run, 'flow').filter(
      (f) => f['signal_source'] === 'ebpf' && f['observation_point'] === 'c-p' && f['client_port'] === keptAlivePort,
    );
    expect(client.at(0)).toMatchObject({ final: false, byte_tx: 0, byte_rx: 0 }); // at ESTABLISHED
    expect(client.at(-1)).toMatchObject({ final: true, close_reason: 'fin' });
    // between them, an update with the first request's bytes (from sock_diag's tcp_info)
    const updates = client.slice(1, -1);
    expect(updates.length).toBeGreaterThanOrEqual(1);
    expect(updates[0]!['byte_tx'] as number).toBeGreaterThan(0);
    expect(updates[0]!['byte_tx'] as number).toBeLessThan(client.at(-1)!['byte_tx'] as number);
    expect(new Set(client.map((f) => f['flow_id'])).size).toBe(1);
  });
});
