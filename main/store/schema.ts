// The SQLite schema of a capture file, as an ordered list of migrations. The schema
// version is SQLite's `user_version`; every migration runs in one transaction. The
// README's "Schema" section documents these tables: change both together.

import type Database from 'better-sqlite3';

export interface Migration {
  version: number;
  description: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'captures, processes and spans',
    sql: `
      CREATE TABLE captures (
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,
        node TEXT,
        state TEXT NOT NULL,
        message TEXT,
        started_at_us INTEGER NOT NULL,
        ended_at_us INTEGER,
        collector_version TEXT,
        kernel TEXT,
        arch TEXT,
        hello TEXT,
        events_seen INTEGER NOT NULL DEFAULT 0,
        spans_received INTEGER NOT NULL DEFAULT 0,
        drops INTEGER NOT NULL DEFAULT 0,
        last_stats TEXT
      );
      CREATE TABLE processes (
        capture_id INTEGER NOT NULL REFERENCES captures(id),
        pid INTEGER NOT NULL,
        ppid INTEGER,
        process_name TEXT,
        cmdline TEXT,
        exe TEXT,
        PRIMARY KEY (capture_id, pid)
      );
      CREATE TABLE spans (
        id INTEGER PRIMARY KEY,
        capture_id INTEGER NOT NULL REFERENCES captures(id),
        signal_source TEXT NOT NULL,
        observation_point TEXT NOT NULL,
        start_time_us INTEGER NOT NULL,
        end_time_us INTEGER NOT NULL,
        duration_us INTEGER NOT NULL,
        node TEXT,
        pid INTEGER,
        tid INTEGER,
        process_name TEXT,
        container_id TEXT,
        netns INTEGER,
        interface TEXT,
        client_ip TEXT,
        client_port INTEGER,
        server_ip TEXT,
        server_port INTEGER,
        l4_protocol TEXT,
        l7_protocol TEXT,
        version TEXT,
        request_type TEXT,
        request_domain TEXT,
        request_resource TEXT,
        endpoint TEXT,
        response_code INTEGER,
        response_status TEXT NOT NULL,
        response_exception TEXT,
        request_length INTEGER,
        response_length INTEGER,
        x_request_id_0 TEXT,
        x_request_id_1 TEXT,
        trace_id TEXT,
        span_id TEXT,
        parent_span_id TEXT,
        syscall_trace_id_request INTEGER,
        syscall_trace_id_response INTEGER,
        req_tcp_seq INTEGER,
        resp_tcp_seq INTEGER,
        app_service TEXT,
        app_instance TEXT,
        attributes TEXT
      );
      CREATE INDEX spans_by_time ON spans (start_time_us);
      CREATE INDEX spans_by_capture_time ON spans (capture_id, start_time_us);
      CREATE INDEX spans_by_status_time ON spans (response_status, start_time_us);
      CREATE INDEX spans_by_xrid0 ON spans (x_request_id_0) WHERE x_request_id_0 IS NOT NULL;
      CREATE INDEX spans_by_xrid1 ON spans (x_request_id_1) WHERE x_request_id_1 IS NOT NULL;
      CREATE INDEX spans_by_trace ON spans (trace_id) WHERE trace_id IS NOT NULL;
    `,
  },
  {
    version: 2,
    description: 'indexes for trace assembly',
    // The search looks spans up by these keys (main/trace/search.ts). Span ids are
    // rare on S spans: partial indexes. Syscall trace ids and the request's TCP
    // sequence number are on every S span; the response's sequence number is only
    // checked, never looked up, so it has no index.
    sql: `
      CREATE INDEX IF NOT EXISTS spans_by_span_id ON spans (span_id) WHERE span_id IS NOT NULL;
      CREATE INDEX IF NOT EXISTS spans_by_parent_span_id ON spans (parent_span_id) WHERE parent_span_id IS NOT NULL;
      CREATE INDEX IF NOT EXISTS spans_by_syscall_req ON spans (syscall_trace_id_request) WHERE syscall_trace_id_request IS NOT NULL;
      CREATE INDEX IF NOT EXISTS spans_by_syscall_resp ON spans (syscall_trace_id_response) WHERE syscall_trace_id_response IS NOT NULL;
      CREATE INDEX IF NOT EXISTS spans_by_req_tcp_seq ON spans (req_tcp_seq) WHERE req_tcp_seq IS NOT NULL;
    `,
  },
  {
    version: 3,
    description: 'TLS flag on spans; container, network namespace and gateway of processes',
    sql: `
      ALTER TABLE spans ADD COLUMN is_tls INTEGER;
      ALTER TABLE processes ADD COLUMN netns INTEGER;
      ALTER TABLE processes ADD COLUMN container_id TEXT;
      ALTER TABLE processes ADD COLUMN gateway TEXT;
    `,
  },
  {
    version: 4,
    description: 'flows (L4, one row per connection per observation point) and network namespaces',
    sql: `
      CREATE TABLE flows (
        id INTEGER PRIMARY KEY,
        capture_id INTEGER NOT NULL REFERENCES captures(id),
        flow_id INTEGER NOT NULL,
        signal_source TEXT NOT NULL,
        observation_point TEXT NOT NULL,
        node TEXT,
        netns INTEGER,
        interface TEXT,
        client_ip TEXT,
        client_port INTEGER,
        server_ip TEXT,
        server_port INTEGER,
        l4_protocol TEXT,
        start_time_us INTEGER NOT NULL,
        end_time_us INTEGER NOT NULL,
        duration_us INTEGER NOT NULL,
        packet_tx INTEGER NOT NULL DEFAULT 0,
        packet_rx INTEGER NOT NULL DEFAULT 0,
        byte_tx INTEGER NOT NULL DEFAULT 0,
        byte_rx INTEGER NOT NULL DEFAULT 0,
        connect_latency_us INTEGER,
        srtt_us INTEGER,
        retrans_tx INTEGER NOT NULL DEFAULT 0,
        retrans_rx INTEGER NOT NULL DEFAULT 0,
        rst_tx INTEGER NOT NULL DEFAULT 0,
        rst_rx INTEGER NOT NULL DEFAULT 0,
        zero_win_tx INTEGER NOT NULL DEFAULT 0,
        zero_win_rx INTEGER NOT NULL DEFAULT 0,
        close_reason TEXT,
        final INTEGER NOT NULL DEFAULT 0,
        UNIQUE (capture_id, flow_id)
      );
      CREATE INDEX flows_by_capture_time ON flows (capture_id, start_time_us);
      CREATE INDEX flows_by_server ON flows (server_ip, server_port);
      CREATE TABLE netns (
        capture_id INTEGER NOT NULL REFERENCES captures(id),
        netns INTEGER NOT NULL,
        names TEXT NOT NULL,
        host INTEGER NOT NULL,
        interfaces TEXT NOT NULL,
        PRIMARY KEY (capture_id, netns)
      );
    `,
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;

export class SchemaError extends Error {
  override name = 'SchemaError';
}

/** Brings `db` to the latest schema version. Returns the versions applied. */
export function migrate(db: Database.Database, migrations: readonly Migration[] = MIGRATIONS): number[] {
  const current = db.pragma('user_version', { simple: true }) as number;
  const latest = migrations[migrations.length - 1]?.version ?? 0;
  if (current > latest) {
    throw new SchemaError(
      `This capture file has schema version ${current}, newer than this Tapdeck understands (${latest}). Open it with a newer Tapdeck.`,
    );
  }
  const applied: number[] = [];
  for (const m of migrations) {
    if (m.version <= current) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    })();
    applied.push(m.version);
  }
  return applied;
}
