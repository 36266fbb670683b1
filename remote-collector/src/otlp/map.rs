//! OTel spans → record-model `span` frames (A spans, `signal_source` "otel").
//!
//! Both generations of the semantic conventions are read: the old HTTP ones
//! (`http.method`, `http.status_code`, `http.target`, `net.peer.*`) and the
//! stable ones (`http.request.method`, `http.response.status_code`, `url.path`,
//! `server.address`, `client.address`, `network.peer.*`), plus `rpc.*` (gRPC
//! status codes) and `db.*`. What is not mapped to a column goes to
//! `attributes` (bounded), and sensitive headers are redacted.

use std::net::IpAddr;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span as OtelSpan};
use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::span::{canonical_reason, status_of};

/// Most bytes of JSON in one span's `attributes`; what does not fit is counted
/// in `attributes["tapdeck.attributes_dropped"]`.
pub const MAX_ATTRIBUTES_BYTES: usize = 4096;
/// Longest attribute string kept (longer ones are cut, with "…").
pub const MAX_ATTRIBUTE_STRING: usize = 512;
const REDACTED: &str = "[redacted]";

/// A `span` frame body for an OTel span: the record model, with null where an
/// application span has nothing to say (syscall ids, TCP sequence numbers…).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppSpan {
    pub signal_source: &'static str,
    pub observation_point: &'static str,
    pub start_time_us: u64,
    pub end_time_us: u64,
    pub duration_us: u64,
    pub pid: Option<u32>,
    pub tid: Option<u32>,
    pub process_name: Option<String>,
    pub container_id: Option<String>,
    pub netns: Option<u64>,
    pub interface: Option<String>,
    pub client_ip: Option<String>,
    pub client_port: Option<u16>,
    pub server_ip: Option<String>,
    pub server_port: Option<u16>,
    pub l4_protocol: Option<&'static str>,
    pub l7_protocol: Option<String>,
    pub version: Option<String>,
    pub request_type: Option<String>,
    pub request_domain: Option<String>,
    pub request_resource: Option<String>,
    pub endpoint: Option<String>,
    pub response_code: Option<i64>,
    pub response_status: &'static str,
    pub response_exception: Option<String>,
    pub request_length: Option<u64>,
    pub response_length: Option<u64>,
    pub x_request_id_0: Option<String>,
    pub x_request_id_1: Option<String>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub parent_span_id: Option<String>,
    pub syscall_trace_id_request: Option<u64>,
    pub syscall_trace_id_response: Option<u64>,
    pub req_tcp_seq: Option<u32>,
    pub resp_tcp_seq: Option<u32>,
    pub app_service: Option<String>,
    pub app_instance: Option<String>,
    pub attributes: Option<Json>,
}

/// Span attribute keys that become columns (left out of `attributes`).
/// `server.*` and `client.*` stay in `attributes` too: they are the logical
/// (Host header, X-Forwarded-For) values, the columns prefer the socket's.
const MAPPED_SPAN_KEYS: &[&str] = &[
    "http.method",
    "http.request.method",
    "http.status_code",
    "http.response.status_code",
    "http.target",
    "http.url",
    "url.full",
    "url.path",
    "url.query",
    "http.host",
    "http.flavor",
    "network.protocol.version",
    "http.request_content_length",
    "http.request.body.size",
    "http.response_content_length",
    "http.response.body.size",
    "http.route",
    "net.peer.ip",
    "net.peer.name",
    "net.peer.port",
    "net.sock.peer.addr",
    "net.sock.peer.port",
    "net.host.ip",
    "net.host.name",
    "net.host.port",
    "net.sock.host.addr",
    "net.sock.host.port",
    "net.transport",
    "network.transport",
    "network.peer.address",
    "network.peer.port",
    "network.local.address",
    "network.local.port",
    "rpc.system",
    "rpc.service",
    "rpc.method",
    "rpc.grpc.status_code",
    "db.system",
    "db.system.name",
    "db.statement",
    "db.query.text",
    "db.operation",
    "db.operation.name",
    "db.name",
    "db.namespace",
];

/// Resource attribute keys that become columns.
const MAPPED_RESOURCE_KEYS: &[&str] =
    &["service.name", "service.instance.id", "host.name", "process.pid", "process.executable.name"];

const SENSITIVE_HEADERS: &[&str] = &["authorization", "cookie", "set-cookie", "proxy-authorization"];

/// Maps every span of an export request.
pub fn map_request(req: &ExportTraceServiceRequest) -> Vec<AppSpan> {
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        let empty = Vec::new();
        let res_attrs = rs.resource.as_ref().map(|r| &r.attributes).unwrap_or(&empty);
        let res = Resource::from(res_attrs);
        for ss in &rs.scope_spans {
            let scope = ss.scope.as_ref().map(|s| s.name.as_str()).filter(|s| !s.is_empty());
            for span in &ss.spans {
                out.push(map_span(span, &res, res_attrs, scope));
            }
        }
    }
    out
}

/// What the resource says about where the spans come from.
#[derive(Debug, Default)]
struct Resource {
    service: Option<String>,
    instance: Option<String>,
    pid: Option<u32>,
    process_name: Option<String>,
}

impl Resource {
    fn from(attrs: &[KeyValue]) -> Self {
        let host = str_attr(attrs, &["host.name"]);
        let pid = int_attr(attrs, &["process.pid"]).and_then(|p| u32::try_from(p).ok());
        let instance = str_attr(attrs, &["service.instance.id"]).or_else(|| match (&host, pid) {
            (Some(h), Some(p)) => Some(format!("{h}/{p}")),
            (Some(h), None) => Some(h.clone()),
            (None, Some(p)) => Some(format!("pid {p}")),
            (None, None) => None,
        });
        Self {
            service: str_attr(attrs, &["service.name"]),
            instance,
            pid,
            process_name: str_attr(attrs, &["process.executable.name"]),
        }
    }
}

fn find<'a>(attrs: &'a [KeyValue], keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| attrs.iter().find(|kv| kv.key == *k)?.value.as_ref()?.value.as_ref())
}

/// A string attribute (the first element of a string array, as header
/// attributes are; an int is shown in decimal).
fn str_attr(attrs: &[KeyValue], keys: &[&str]) -> Option<String> {
    let s = match find(attrs, keys)? {
        Value::StringValue(s) => s.clone(),
        Value::IntValue(i) => i.to_string(),
        Value::ArrayValue(a) => match a.values.first()?.value.as_ref()? {
            Value::StringValue(s) => s.clone(),
            _ => return None,
        },
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
}

fn int_attr(attrs: &[KeyValue], keys: &[&str]) -> Option<i64> {
    match find(attrs, keys)? {
        Value::IntValue(i) => Some(*i),
        Value::StringValue(s) => s.trim().parse().ok(),
        Value::DoubleValue(d) if d.fract() == 0.0 && d.abs() < 9e15 => Some(*d as i64),
        _ => None,
    }
}

fn port_attr(attrs: &[KeyValue], keys: &[&str]) -> Option<u16> {
    int_attr(attrs, keys).and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0)
}

/// An IP address attribute, normalised (IPv4-mapped IPv6 shown as IPv4);
/// host names are not addresses and give None.
fn ip_attr(attrs: &[KeyValue], keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| {
        let s = str_attr(attrs, &[k])?;
        let ip: IpAddr = s.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
        Some(match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(|v4| v4.to_string()).unwrap_or_else(|| v6.to_string()),
            v4 => v4.to_string(),
        })
    })
}

fn hex_id(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() || bytes.iter().all(|b| *b == 0) {
        return None;
    }
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    Some(s)
}

/// Splits an absolute URL into (authority, path with query); a bare path is
/// returned as the path.
fn split_url(url: &str) -> (Option<String>, Option<String>) {
    let Some((_, rest)) = url.split_once("://") else {
        return (None, url.starts_with('/').then(|| url.to_string()));
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let authority = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
    let path = rest[end..].split('#').next().unwrap_or("");
    let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
    ((!authority.is_empty()).then(|| authority.to_string()), Some(path))
}

fn l7_of_db(system: &str) -> String {
    match system {
        "mysql" => "MySQL",
        "postgresql" => "PostgreSQL",
        "redis" => "Redis",
        "mongodb" => "MongoDB",
        "elasticsearch" => "Elasticsearch",
        "memcached" => "Memcached",
        "cassandra" => "Cassandra",
        "mssql" | "microsoft.sql_server" => "SQLServer",
        "oracle" | "oracle.db" => "Oracle",
        "sqlite" => "SQLite",
        other => return other.to_string(),
    }
    .to_string()
}

/// `response_status` of a gRPC status code (DeepFlow's split: caller's fault
/// vs the server's).
fn grpc_status(code: i64) -> &'static str {
    match code {
        0 => "ok",
        1 | 3 | 5 | 6 | 7 | 8 | 9 | 11 | 16 => "client_error",
        4 => "timeout",
        2 | 10 | 12 | 13 | 14 | 15 => "server_error",
        _ => "unknown",
    }
}

fn grpc_name(code: i64) -> Option<&'static str> {
    Some(match code {
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => return None,
    })
}

fn any_to_json(v: &AnyValue) -> Json {
    match v.value.as_ref() {
        None => Json::Null,
        Some(Value::StringValue(s)) => Json::String(truncate(s)),
        Some(Value::BoolValue(b)) => Json::Bool(*b),
        // Beyond 2^53 a JSON reader loses precision: keep those as strings.
        Some(Value::IntValue(i)) if i.unsigned_abs() < (1u64 << 53) => Json::from(*i),
        Some(Value::IntValue(i)) => Json::String(i.to_string()),
        Some(Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map(Json::Number).unwrap_or(Json::Null)
        }
        Some(Value::ArrayValue(a)) => Json::Array(a.values.iter().map(any_to_json).collect()),
        Some(Value::KvlistValue(l)) => Json::Object(
            l.values
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.as_ref().map(any_to_json).unwrap_or(Json::Null)))
                .collect(),
        ),
        Some(Value::BytesValue(b)) => Json::String(hex_id(b).unwrap_or_default()),
        #[allow(unreachable_patterns)]
        Some(_) => Json::Null,
    }
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_ATTRIBUTE_STRING {
        return s.to_string();
    }
    let mut end = MAX_ATTRIBUTE_STRING;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn is_sensitive(key: &str) -> bool {
    ["http.request.header.", "http.response.header."].iter().any(|p| {
        key.strip_prefix(p).is_some_and(|h| {
            let h = h.replace('_', "-");
            SENSITIVE_HEADERS.iter().any(|s| h.eq_ignore_ascii_case(s))
        })
    })
}

/// The bounded `attributes` object: span name and kind, scope, then the span's
/// and the resource's attributes that are not columns. Sensitive headers are
/// replaced by "[redacted]".
fn attributes_json(span: &OtelSpan, res_attrs: &[KeyValue], scope: Option<&str>) -> Json {
    let mut m = Map::new();
    let mut size = 2usize;
    let mut dropped = 0u64;
    let mut put = |m: &mut Map<String, Json>, k: &str, v: Json| {
        if m.contains_key(k) {
            return;
        }
        let cost = k.len() + 4 + serde_json::to_string(&v).map(|s| s.len()).unwrap_or(0);
        if size + cost > MAX_ATTRIBUTES_BYTES {
            dropped += 1;
            return;
        }
        size += cost;
        m.insert(k.to_string(), v);
    };
    put(&mut m, "otel.span_name", Json::String(truncate(&span.name)));
    if let Some(s) = scope {
        put(&mut m, "otel.scope_name", Json::String(truncate(s)));
    }
    for kv in &span.attributes {
        if MAPPED_SPAN_KEYS.contains(&kv.key.as_str()) || kv.key.is_empty() {
            continue;
        }
        let v = if is_sensitive(&kv.key) {
            Json::String(REDACTED.into())
        } else {
            kv.value.as_ref().map(any_to_json).unwrap_or(Json::Null)
        };
        put(&mut m, &kv.key, v);
    }
    for kv in res_attrs {
        if MAPPED_RESOURCE_KEYS.contains(&kv.key.as_str()) || kv.key.is_empty() {
            continue;
        }
        put(&mut m, &kv.key, kv.value.as_ref().map(any_to_json).unwrap_or(Json::Null));
    }
    if dropped > 0 {
        m.insert("tapdeck.attributes_dropped".into(), Json::from(dropped));
    }
    Json::Object(m)
}

fn first_exception(span: &OtelSpan) -> Option<String> {
    let ev = span.events.iter().find(|e| e.name == "exception")?;
    let ty = str_attr(&ev.attributes, &["exception.type"]);
    let msg = str_attr(&ev.attributes, &["exception.message"]);
    match (ty, msg) {
        (Some(t), Some(m)) => Some(format!("{t}: {m}")),
        (t, m) => t.or(m),
    }
}

fn map_span(span: &OtelSpan, res: &Resource, res_attrs: &[KeyValue], scope: Option<&str>) -> AppSpan {
    let a = span.attributes.as_slice();
    let kind = SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified);
    let observation_point = match kind {
        SpanKind::Server => "s-app",
        SpanKind::Client => "c-app",
        _ => "app",
    };
    let start_time_us = span.start_time_unix_nano / 1000;
    let end_time_us = (span.end_time_unix_nano / 1000).max(start_time_us);

    let method = str_attr(a, &["http.request.method", "http.method"]);
    let http_code = int_attr(a, &["http.response.status_code", "http.status_code"]);
    let rpc_system = str_attr(a, &["rpc.system"]);
    let db_system = str_attr(a, &["db.system.name", "db.system"]);
    let is_http = method.is_some() || http_code.is_some();

    // URL pieces: old `http.target`/`http.url`, new `url.path`+`url.query`/`url.full`.
    let full = str_attr(a, &["url.full", "http.url"]);
    let (url_authority, url_path) = full.as_deref().map(split_url).unwrap_or((None, None));
    let target = str_attr(a, &["http.target"]).or_else(|| {
        str_attr(a, &["url.path"]).map(|p| match str_attr(a, &["url.query"]) {
            Some(q) => format!("{p}?{}", q.trim_start_matches('?')),
            None => p,
        })
    });
    let target = target.or(url_path);
    let path = target.as_deref().map(|t| t.split('?').next().unwrap_or(t).to_string());

    let server_address = str_attr(a, &["server.address"]);
    let domain = str_attr(a, &["http.host"])
        .or(url_authority)
        .or_else(|| {
            server_address.clone().map(|h| match port_attr(a, &["server.port"]) {
                Some(p) if kind == SpanKind::Client => format!("{h}:{p}"),
                _ => h,
            })
        })
        .or_else(|| str_attr(a, &["net.peer.name"]).filter(|_| kind == SpanKind::Client))
        .or_else(|| str_attr(a, &["net.host.name"]).filter(|_| kind == SpanKind::Server));

    let mut l7 = None;
    let mut version = str_attr(a, &["network.protocol.version", "http.flavor"]);
    let mut request_type = None;
    let mut request_resource = None;
    let mut endpoint = None;
    let mut response_code = None;
    let mut response_status = None;
    let mut response_exception = None;
    let mut request_domain = None;

    if let Some(sys) = rpc_system.as_deref() {
        let service = str_attr(a, &["rpc.service"]);
        let rpc_method = str_attr(a, &["rpc.method"]);
        l7 = Some(if sys == "grpc" { "gRPC".to_string() } else { sys.to_string() });
        if sys == "grpc" {
            version = version.or_else(|| Some("2".into()));
            request_type = Some("POST".to_string());
        } else {
            request_type = rpc_method.clone();
        }
        let full_method = match (&service, &rpc_method) {
            (Some(s), Some(m)) => Some(format!("/{s}/{m}")),
            (Some(s), None) => Some(s.clone()),
            (None, Some(m)) => Some(m.clone()),
            _ => None,
        };
        request_resource = full_method.clone().or(target.clone());
        endpoint = full_method.or(path.clone());
        request_domain = domain.clone();
        if let Some(c) = int_attr(a, &["rpc.grpc.status_code"]) {
            response_code = Some(c);
            response_status = Some(grpc_status(c));
            response_exception = grpc_name(c).map(str::to_string);
        }
    } else if let Some(sys) = db_system.as_deref() {
        l7 = Some(l7_of_db(sys));
        request_type = str_attr(a, &["db.operation.name", "db.operation"]);
        request_resource = str_attr(a, &["db.query.text", "db.statement"]).map(|s| truncate(&s));
        request_domain = str_attr(a, &["db.namespace", "db.name"]).or(server_address.clone());
        endpoint = Some(span.name.clone());
    } else if is_http {
        l7 = Some("HTTP".to_string());
        request_type = method.map(|m| m.to_ascii_uppercase());
        request_resource = target.clone();
        endpoint = str_attr(a, &["http.route"]).or(path.clone());
        request_domain = domain.clone();
    }
    if is_http && response_code.is_none() {
        if let Some(c) = http_code {
            response_code = Some(c);
            let s = u16::try_from(c).ok();
            response_status = Some(status_of(s));
            if c >= 400 {
                response_exception = s.and_then(canonical_reason).map(str::to_string);
            }
        }
    }
    let endpoint = endpoint.or_else(|| (!span.name.is_empty()).then(|| span.name.clone()));

    // Outcome: the span status says it when the protocol did not.
    let status = span.status.as_ref();
    let status_error = status.map(|s| s.code == StatusCode::Error as i32).unwrap_or(false);
    let status_msg = status.map(|s| s.message.clone()).filter(|m| !m.is_empty());
    let response_status = response_status
        .filter(|s| !(status_error && *s == "ok"))
        .unwrap_or(if status_error { "server_error" } else { "ok" });
    let response_exception = status_msg.or_else(|| first_exception(span)).or(response_exception);

    // The socket. Server spans: the peer is the client; client spans: the peer is the server.
    let (client_ip, client_port, server_ip, server_port) = match kind {
        SpanKind::Client | SpanKind::Producer => (
            ip_attr(a, &["network.local.address", "net.sock.host.addr", "net.host.ip"]),
            port_attr(a, &["network.local.port", "net.sock.host.port"]),
            ip_attr(
                a,
                &[
                    "network.peer.address",
                    "net.sock.peer.addr",
                    "net.peer.ip",
                    "server.address",
                    "net.peer.name",
                ],
            ),
            port_attr(a, &["network.peer.port", "net.sock.peer.port", "server.port", "net.peer.port"]),
        ),
        // The socket first; `client.address` (the original client, e.g. from
        // X-Forwarded-For) only when the span has no peer address.
        _ => (
            ip_attr(
                a,
                &[
                    "network.peer.address",
                    "net.sock.peer.addr",
                    "net.peer.ip",
                    "client.address",
                    "http.client_ip",
                ],
            ),
            port_attr(a, &["network.peer.port", "net.sock.peer.port", "net.peer.port", "client.port"]),
            // Not `server.address`/`server.port`: on a server span they are the Host header's.
            ip_attr(a, &["network.local.address", "net.sock.host.addr", "net.host.ip"]),
            port_attr(a, &["network.local.port", "net.sock.host.port", "net.host.port"]),
        ),
    };
    let transport = str_attr(a, &["network.transport", "net.transport"]);
    let l4_protocol = match transport.as_deref() {
        Some("tcp" | "ip_tcp") => Some("TCP"),
        Some("udp" | "ip_udp") => Some("UDP"),
        Some(_) => None,
        None if is_http || rpc_system.is_some() => Some("TCP"),
        None => None,
    };

    AppSpan {
        signal_source: "otel",
        observation_point,
        start_time_us,
        end_time_us,
        duration_us: end_time_us - start_time_us,
        pid: res.pid,
        tid: int_attr(a, &["thread.id"]).and_then(|t| u32::try_from(t).ok()),
        process_name: res.process_name.clone(),
        container_id: None,
        netns: None,
        interface: None,
        client_ip,
        client_port,
        server_ip,
        server_port,
        l4_protocol,
        l7_protocol: l7,
        version,
        request_type,
        request_domain,
        request_resource,
        endpoint,
        response_code,
        response_status,
        response_exception,
        request_length: int_attr(a, &["http.request.body.size", "http.request_content_length"])
            .and_then(|n| u64::try_from(n).ok()),
        response_length: int_attr(a, &["http.response.body.size", "http.response_content_length"])
            .and_then(|n| u64::try_from(n).ok()),
        x_request_id_0: str_attr(
            a,
            &["http.request.header.x-request-id", "http.request.header.x_request_id"],
        ),
        x_request_id_1: str_attr(
            a,
            &["http.response.header.x-request-id", "http.response.header.x_request_id"],
        ),
        trace_id: hex_id(&span.trace_id),
        span_id: hex_id(&span.span_id),
        parent_span_id: hex_id(&span.parent_span_id),
        syscall_trace_id_request: None,
        syscall_trace_id_response: None,
        req_tcp_seq: None,
        resp_tcp_seq: None,
        app_service: res.service.clone(),
        app_instance: res.instance.clone(),
        attributes: Some(attributes_json(span, res_attrs, scope)),
    }
}
