// Process frames for real processes: Debian's nginx started the way Kong and APISIX
// start OpenResty (their documented process lines: `nginx -p /usr/local/kong -c
// nginx.conf`, `openresty -p /usr/local/apisix -c /usr/local/apisix/conf/nginx.conf`;
// Kong and APISIX themselves cannot be installed here), one of them inside a cgroup
// named the way Docker names a container's. The collector must send each master and
// worker with its gateway, container id, network namespace and exe.

import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { framesOf, startCollector, until } from '../support/collector.ts';
import { COLLECTOR_BIN, isRoot } from '../support/lab.ts';

const NGINX = '/usr/sbin/nginx';
const CONTAINER_ID = 'd4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3';

function conf(prefix: string): string {
  const tmp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `${t}_temp_path ${prefix}/tmp/${t};`);
  return `worker_processes 2;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log notice;
events { worker_connections 64; }
http {
  access_log off;
  ${tmp.join('\n  ')}
  server { listen unix:${prefix}/gw.sock; return 204; }
}
`;
}

/** A cgroup that looks like a Docker container's: v2 `docker-ID.scope`, or v1 `/docker/ID`.
 * Returns the directories it made, deepest first (to remove them), or null. */
function containerCgroup(): string[] | null {
  const forms = [
    { root: '/sys/fs/cgroup', parts: [`docker-${CONTAINER_ID}.scope`] },
    { root: '/sys/fs/cgroup/pids', parts: ['docker', CONTAINER_ID] },
  ];
  for (const { root, parts } of forms) {
    if (!existsSync(join(root, 'cgroup.procs'))) continue;
    const made: string[] = [];
    try {
      let d = root;
      for (const p of parts) {
        d = join(d, p);
        if (!existsSync(d)) {
          mkdirSync(d);
          made.unshift(d);
        }
      }
      return made.length ? made : null;
    } catch {
      made.forEach((m) => rmdirSync(m));
      // not writable here (e.g. a container without cgroup delegation): try the next form
    }
  }
  return null;
}

const readPid = (f: string): number => Number(readFileSync(f, 'utf8').trim());
const children = (pid: number): number[] =>
  spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter(Boolean)
    .map(Number);

describe.skipIf(!isRoot)('process frames: gateway, container, netns (root)', () => {
  let dir: string;
  let made: string[] | null = null;
  let cgroup: string | null = null;
  const masters: number[] = [];
  beforeAll(() => {
    if (!existsSync(COLLECTOR_BIN)) throw new Error(`${COLLECTOR_BIN} is missing: run npm run build:collector`);
    dir = mkdtempSync(join(tmpdir(), 'td-gw-'));
    for (const p of ['kong/tmp', 'apisix/tmp', 'apisix/conf']) mkdirSync(join(dir, p), { recursive: true });
    writeFileSync(join(dir, 'kong', 'nginx.conf'), conf(join(dir, 'kong')));
    writeFileSync(join(dir, 'apisix', 'conf', 'nginx.conf'), conf(join(dir, 'apisix')));
    made = containerCgroup();
    cgroup = made?.[0] ?? null;
    // Kong: OpenResty's nginx with the Kong prefix and a relative conf, inside the "container".
    const enter = cgroup ? `echo $$ > ${cgroup}/cgroup.procs && ` : '';
    execFileSync('sh', ['-c', `${enter}exec ${NGINX} -p ${dir}/kong/ -c nginx.conf`]);
    // APISIX: started as `openresty` (exec -a), the APISIX prefix and its conf/nginx.conf.
    execFileSync('bash', ['-c', `exec -a openresty ${NGINX} -p ${dir}/apisix -c ${dir}/apisix/conf/nginx.conf`]);
    masters.push(readPid(join(dir, 'kong', 'nginx.pid')), readPid(join(dir, 'apisix', 'nginx.pid')));
  });
  afterAll(async () => {
    for (const m of masters) spawnSync('kill', ['-TERM', String(m)]);
    await until('the test gateways to exit', () => masters.every((m) => !existsSync(`/proc/${m}`)), 10_000).catch(() =>
      masters.forEach((m) => spawnSync('kill', ['-KILL', String(m)])),
    );
    if (cgroup) {
      await until('the cgroup to empty', () => readFileSync(join(cgroup!, 'cgroup.procs'), 'utf8').trim() === '', 5000)
        .then(() => made!.forEach((m) => rmdirSync(m)))
        .catch(() => undefined);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('sends each master and worker with its gateway, container id, netns and exe', async () => {
    const [kong, apisix] = masters as [number, number];
    await until('workers', () => children(kong).length === 2 && children(apisix).length === 2, 10_000);
    const run = startCollector(['--process', String(kong), '--process', String(apisix), '--duration', '3s']);
    expect(await run.exited, run.stderr).toBe(0);
    const procs = new Map(framesOf(run, 'process').map((p) => [p['pid'] as number, p]));
    const netns = Number(/net:\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/net'))![1]);

    const expectGroup = (master: number, gateway: string, cmd: RegExp, containerId: string | null): void => {
      const pids = [master, ...children(master)];
      expect(pids).toHaveLength(3);
      for (const pid of pids) {
        expect(procs.get(pid), `process frame of ${gateway} pid ${pid}`).toMatchObject({
          pid,
          process_name: 'nginx',
          exe: NGINX,
          gateway,
          netns,
          container_id: containerId,
        });
      }
      expect(procs.get(master)!['cmdline']).toMatch(cmd);
      for (const w of children(master)) {
        expect(procs.get(w)).toMatchObject({ ppid: master, cmdline: 'nginx: worker process' });
      }
    };
    expectGroup(
      kong,
      'kong',
      /^nginx: master process \/usr\/sbin\/nginx -p \S+\/kong\/ -c nginx\.conf$/,
      cgroup ? CONTAINER_ID : null,
    );
    expectGroup(
      apisix,
      'apisix',
      /^nginx: master process openresty -p \S+\/apisix -c \S+\/apisix\/conf\/nginx\.conf$/,
      null,
    );
    if (!cgroup) console.warn('no writable cgroup hierarchy here: the container id was checked as null only');
  });
});
