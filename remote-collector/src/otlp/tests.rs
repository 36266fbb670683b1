//! OTLP receiver tests from byte fixtures: request bodies are built here with
//! the generated prost types (protobuf) or written by hand from the OTLP/JSON
//! rules of the spec (hex ids, integer enums, 64-bit integers as strings,
//! lowerCamelCase keys), then sent over a real TCP socket to the receiver.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flate2::write::GzEncoder;
use flate2::Compression;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

use super::decode::{self, DecodeError, Encoding, RpcStatus};
use super::map::{map_request, AppSpan, MAX_ATTRIBUTES_BYTES};
use super::server::{Config, Receiver, Sink};
use super::Reject;

const TRACE: [u8; 16] =
    [0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36];
const SPAN: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];
const PARENT: [u8; 8] = [0x53, 0x99, 0x5c, 0x3f, 0x42, 0xcd, 0x8a, 0xd8];

fn kv(k: &str, v: Value) -> KeyValue {
    KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}
fn s(k: &str, v: &str) -> KeyValue {
    kv(k, Value::StringValue(v.into()))
}
fn i(k: &str, v: i64) -> KeyValue {
    kv(k, Value::IntValue(v))
}
fn strs(k: &str, v: &[&str]) -> KeyValue {
    kv(
        k,
        Value::ArrayValue(ArrayValue {
            values: v.iter().map(|x| AnyValue { value: Some(Value::StringValue((*x).into())) }).collect(),
        }),
    )
}

fn request(resource: Vec<KeyValue>, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: resource, ..Default::default() }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "@opentelemetry/instrumentation-http".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn svca_resource() -> Vec<KeyValue> {
    vec![
        s("service.name", "svca"),
        s("host.name", "lab-svca"),
        i("process.pid", 4242),
        s("process.executable.name", "node"),
        s("telemetry.sdk.language", "nodejs"),
    ]
}

/// An old-convention HTTP server span (instrumentation-http ≤ 0.5x default).
fn old_server_span() -> Span {
    Span {
        trace_id: TRACE.to_vec(),
        span_id: SPAN.to_vec(),
        parent_span_id: PARENT.to_vec(),
        name: "GET /chain/:id".into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: 1_700_000_000_123_456_789,
        end_time_unix_nano: 1_700_000_000_125_456_000,
        attributes: vec![
            s("http.method", "GET"),
            s("http.target", "/chain/7?q=1"),
            s("http.host", "198.18.0.30:8080"),
            s("http.flavor", "1.1"),
            i("http.status_code", 200),
            s("http.route", "/chain/:id"),
            s("net.peer.ip", "::ffff:198.18.0.20"),
            i("net.peer.port", 40312),
            s("net.host.ip", "198.18.0.30"),
            i("net.host.port", 8080),
            s("net.transport", "ip_tcp"),
            strs("http.request.header.x_request_id", &["rid-1"]),
            strs("http.response.header.x_request_id", &["rid-1"]),
            strs("http.request.header.authorization", &["Bearer secret"]),
            s("http.user_agent", "curl/7.88.1"),
        ],
        status: Some(Status { code: 0, message: String::new() }),
        ..Default::default()
    }
}

/// A stable-convention HTTP client span that failed with 503.
fn new_client_span() -> Span {
    Span {
        trace_id: TRACE.to_vec(),
        span_id: PARENT.to_vec(),
        parent_span_id: SPAN.to_vec(),
        name: "GET".into(),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: 1_700_000_000_124_000_000,
        end_time_unix_nano: 1_700_000_000_124_900_000,
        attributes: vec![
            s("http.request.method", "GET"),
            s("url.full", "http://198.18.0.40:8080/api/7?q=1"),
            s("server.address", "198.18.0.40"),
            i("server.port", 8080),
            s("network.peer.address", "198.18.0.40"),
            i("network.peer.port", 8080),
            s("network.protocol.version", "1.1"),
            i("http.response.status_code", 503),
            i("http.response.body.size", 17),
            strs("http.request.header.x-request-id", &["rid-1"]),
        ],
        status: Some(Status { code: 2, message: String::new() }),
        ..Default::default()
    }
}

fn map_one(span: Span) -> AppSpan {
    let mut v = map_request(&request(svca_resource(), vec![span]));
    assert_eq!(v.len(), 1);
    v.remove(0)
}

#[test]
fn old_conventions_server_span() {
    let a = map_one(old_server_span());
    assert_eq!(a.signal_source, "otel");
    assert_eq!(a.observation_point, "s-app");
    assert_eq!(a.start_time_us, 1_700_000_000_123_456);
    assert_eq!(a.end_time_us, 1_700_000_000_125_456);
    assert_eq!(a.duration_us, 2000);
    assert_eq!(a.trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert_eq!(a.span_id.as_deref(), Some("00f067aa0ba902b7"));
    assert_eq!(a.parent_span_id.as_deref(), Some("53995c3f42cd8ad8"));
    assert_eq!(a.l7_protocol.as_deref(), Some("HTTP"));
    assert_eq!(a.version.as_deref(), Some("1.1"));
    assert_eq!(a.request_type.as_deref(), Some("GET"));
    assert_eq!(a.request_resource.as_deref(), Some("/chain/7?q=1"));
    assert_eq!(a.endpoint.as_deref(), Some("/chain/:id"));
    assert_eq!(a.request_domain.as_deref(), Some("198.18.0.30:8080"));
    assert_eq!(a.response_code, Some(200));
    assert_eq!(a.response_status, "ok");
    assert_eq!(a.response_exception, None);
    assert_eq!(a.client_ip.as_deref(), Some("198.18.0.20"), "IPv4-mapped shown as IPv4");
    assert_eq!(a.client_port, Some(40312));
    assert_eq!(a.server_ip.as_deref(), Some("198.18.0.30"));
    assert_eq!(a.server_port, Some(8080));
    assert_eq!(a.l4_protocol, Some("TCP"));
    assert_eq!(a.x_request_id_0.as_deref(), Some("rid-1"));
    assert_eq!(a.x_request_id_1.as_deref(), Some("rid-1"));
    assert_eq!(a.app_service.as_deref(), Some("svca"));
    assert_eq!(a.app_instance.as_deref(), Some("lab-svca/4242"));
    assert_eq!(a.pid, Some(4242));
    assert_eq!(a.process_name.as_deref(), Some("node"));
    assert_eq!(a.syscall_trace_id_request, None);
    let attrs = a.attributes.unwrap();
    assert_eq!(attrs["otel.span_name"], "GET /chain/:id");
    assert_eq!(attrs["otel.scope_name"], "@opentelemetry/instrumentation-http");
    assert_eq!(attrs["http.user_agent"], "curl/7.88.1");
    assert_eq!(attrs["telemetry.sdk.language"], "nodejs");
    assert_eq!(attrs["http.request.header.authorization"], "[redacted]");
    assert!(attrs.get("http.method").is_none(), "mapped attributes are columns, not attributes");
    assert!(!attrs.to_string().contains("secret"));
}

#[test]
fn new_conventions_client_span() {
    let a = map_one(new_client_span());
    assert_eq!(a.observation_point, "c-app");
    assert_eq!(a.request_type.as_deref(), Some("GET"));
    assert_eq!(a.request_resource.as_deref(), Some("/api/7?q=1"));
    assert_eq!(a.endpoint.as_deref(), Some("/api/7"));
    assert_eq!(a.request_domain.as_deref(), Some("198.18.0.40:8080"));
    assert_eq!(a.response_code, Some(503));
    assert_eq!(a.response_status, "server_error");
    assert_eq!(a.response_exception.as_deref(), Some("Service Unavailable"));
    assert_eq!(a.server_ip.as_deref(), Some("198.18.0.40"));
    assert_eq!(a.server_port, Some(8080));
    assert_eq!(a.client_ip, None);
    assert_eq!(a.response_length, Some(17));
    assert_eq!(a.x_request_id_0.as_deref(), Some("rid-1"));
    assert_eq!(a.x_request_id_1, None);
}

#[test]
fn new_conventions_url_path_and_query() {
    let mut sp = old_server_span();
    sp.attributes = vec![
        s("http.request.method", "POST"),
        s("url.path", "/api/users/9"),
        s("url.query", "force=1"),
        s("client.address", "198.18.0.20"),
        i("client.port", 5555),
        i("http.response.status_code", 404),
    ];
    let a = map_one(sp);
    assert_eq!(a.request_type.as_deref(), Some("POST"));
    assert_eq!(a.request_resource.as_deref(), Some("/api/users/9?force=1"));
    assert_eq!(a.endpoint.as_deref(), Some("/api/users/9"));
    assert_eq!(a.client_ip.as_deref(), Some("198.18.0.20"));
    assert_eq!(a.client_port, Some(5555));
    assert_eq!(a.response_status, "client_error");
    assert_eq!(a.response_exception.as_deref(), Some("Not Found"));
}

#[test]
fn grpc_and_db_spans() {
    let mut sp = new_client_span();
    sp.attributes = vec![
        s("rpc.system", "grpc"),
        s("rpc.service", "shop.Cart"),
        s("rpc.method", "AddItem"),
        i("rpc.grpc.status_code", 5),
        s("server.address", "10.0.0.7"),
        i("server.port", 50051),
    ];
    sp.status = None;
    let a = map_one(sp);
    assert_eq!(a.l7_protocol.as_deref(), Some("gRPC"));
    assert_eq!(a.request_resource.as_deref(), Some("/shop.Cart/AddItem"));
    assert_eq!(a.endpoint.as_deref(), Some("/shop.Cart/AddItem"));
    assert_eq!(a.response_code, Some(5));
    assert_eq!(a.response_status, "client_error");
    assert_eq!(a.response_exception.as_deref(), Some("NOT_FOUND"));
    assert_eq!(a.server_ip.as_deref(), Some("10.0.0.7"));
    assert_eq!(a.server_port, Some(50051));

    let mut db = new_client_span();
    db.name = "SELECT shop.items".into();
    db.attributes = vec![
        s("db.system", "postgresql"),
        s("db.statement", "SELECT * FROM items WHERE id = $1"),
        s("db.operation", "SELECT"),
        s("db.name", "shop"),
    ];
    db.status = Some(Status { code: 2, message: "relation \"items\" does not exist".into() });
    let a = map_one(db);
    assert_eq!(a.l7_protocol.as_deref(), Some("PostgreSQL"));
    assert_eq!(a.request_type.as_deref(), Some("SELECT"));
    assert_eq!(a.request_resource.as_deref(), Some("SELECT * FROM items WHERE id = $1"));
    assert_eq!(a.request_domain.as_deref(), Some("shop"));
    assert_eq!(a.response_status, "server_error");
    assert_eq!(a.response_exception.as_deref(), Some("relation \"items\" does not exist"));

    // Stable names: db.system.name, db.query.text, db.operation.name.
    let mut db2 = new_client_span();
    db2.attributes = vec![
        s("db.system.name", "mysql"),
        s("db.query.text", "UPDATE t SET a = ?"),
        s("db.operation.name", "UPDATE"),
    ];
    db2.status = None;
    let a = map_one(db2);
    assert_eq!(a.l7_protocol.as_deref(), Some("MySQL"));
    assert_eq!(a.request_type.as_deref(), Some("UPDATE"));
    assert_eq!(a.request_resource.as_deref(), Some("UPDATE t SET a = ?"));
    assert_eq!(a.response_status, "ok");
}

#[test]
fn internal_span_kinds_and_missing_ids() {
    let mut sp = old_server_span();
    sp.kind = span::SpanKind::Internal as i32;
    sp.attributes.clear();
    sp.parent_span_id.clear();
    sp.name = "render cart".into();
    let a = map_one(sp);
    assert_eq!(a.observation_point, "app");
    assert_eq!(a.parent_span_id, None);
    assert_eq!(a.l7_protocol, None);
    assert_eq!(a.endpoint.as_deref(), Some("render cart"));
    assert_eq!(a.response_status, "ok");
    // No service.instance.id, no host.name and pid: no instance.
    let v = map_request(&request(vec![s("service.name", "x")], vec![old_server_span()]));
    assert_eq!(v[0].app_instance, None);
    let v = map_request(&request(
        vec![s("service.name", "x"), s("service.instance.id", "x-7f9c")],
        vec![old_server_span()],
    ));
    assert_eq!(v[0].app_instance.as_deref(), Some("x-7f9c"));
}

#[test]
fn attributes_are_bounded() {
    let mut sp = old_server_span();
    for n in 0..200 {
        sp.attributes.push(s(&format!("app.attr.{n}"), &"v".repeat(100)));
    }
    sp.attributes.push(s("app.huge", &"x".repeat(10_000)));
    let a = map_one(sp);
    let attrs = a.attributes.unwrap();
    assert!(attrs.to_string().len() <= MAX_ATTRIBUTES_BYTES + 64, "{}", attrs.to_string().len());
    assert!(attrs["tapdeck.attributes_dropped"].as_u64().unwrap() > 100);
}

/// The same two spans written by hand in OTLP/JSON, following the spec.
const JSON_FIXTURE: &str = r#"{
  "resourceSpans": [{
    "resource": {"attributes": [
      {"key": "service.name", "value": {"stringValue": "svca"}},
      {"key": "host.name", "value": {"stringValue": "lab-svca"}},
      {"key": "process.pid", "value": {"intValue": "4242"}},
      {"key": "process.executable.name", "value": {"stringValue": "node"}},
      {"key": "telemetry.sdk.language", "value": {"stringValue": "nodejs"}}
    ]},
    "scopeSpans": [{
      "scope": {"name": "@opentelemetry/instrumentation-http"},
      "spans": [{
        "traceId": "4BF92F3577B34DA6A3CE929D0E0E4736",
        "spanId": "00f067aa0ba902b7",
        "parentSpanId": "53995c3f42cd8ad8",
        "name": "GET /chain/:id",
        "kind": 2,
        "startTimeUnixNano": "1700000000123456789",
        "endTimeUnixNano": "1700000000125456000",
        "attributes": [
          {"key": "http.method", "value": {"stringValue": "GET"}},
          {"key": "http.target", "value": {"stringValue": "/chain/7?q=1"}},
          {"key": "http.host", "value": {"stringValue": "198.18.0.30:8080"}},
          {"key": "http.flavor", "value": {"stringValue": "1.1"}},
          {"key": "http.status_code", "value": {"intValue": "200"}},
          {"key": "http.route", "value": {"stringValue": "/chain/:id"}},
          {"key": "net.peer.ip", "value": {"stringValue": "::ffff:198.18.0.20"}},
          {"key": "net.peer.port", "value": {"intValue": 40312}},
          {"key": "net.host.ip", "value": {"stringValue": "198.18.0.30"}},
          {"key": "net.host.port", "value": {"intValue": "8080"}},
          {"key": "net.transport", "value": {"stringValue": "ip_tcp"}},
          {"key": "http.request.header.x_request_id", "value": {"arrayValue": {"values": [{"stringValue": "rid-1"}]}}},
          {"key": "http.response.header.x_request_id", "value": {"arrayValue": {"values": [{"stringValue": "rid-1"}]}}},
          {"key": "http.request.header.authorization", "value": {"arrayValue": {"values": [{"stringValue": "Bearer secret"}]}}},
          {"key": "http.user_agent", "value": {"stringValue": "curl/7.88.1"}}
        ],
        "status": {}
      }, {
        "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
        "spanId": "53995c3f42cd8ad8",
        "parentSpanId": "00f067aa0ba902b7",
        "name": "GET",
        "kind": 3,
        "startTimeUnixNano": "1700000000124000000",
        "endTimeUnixNano": 1700000000124900000,
        "attributes": [
          {"key": "http.request.method", "value": {"stringValue": "GET"}},
          {"key": "url.full", "value": {"stringValue": "http://198.18.0.40:8080/api/7?q=1"}},
          {"key": "server.address", "value": {"stringValue": "198.18.0.40"}},
          {"key": "server.port", "value": {"intValue": "8080"}},
          {"key": "network.peer.address", "value": {"stringValue": "198.18.0.40"}},
          {"key": "network.peer.port", "value": {"intValue": "8080"}},
          {"key": "network.protocol.version", "value": {"stringValue": "1.1"}},
          {"key": "http.response.status_code", "value": {"intValue": "503"}},
          {"key": "http.response.body.size", "value": {"intValue": "17"}},
          {"key": "http.request.header.x-request-id", "value": {"arrayValue": {"values": [{"stringValue": "rid-1"}]}}}
        ],
        "status": {"code": 2},
        "unknownFieldsAreIgnored": true
      }]
    }]
  }]
}"#;

fn both_spans() -> ExportTraceServiceRequest {
    request(svca_resource(), vec![old_server_span(), new_client_span()])
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

const MAX: usize = 1 << 20;

#[test]
fn protobuf_and_json_give_identical_spans() {
    let proto = both_spans().encode_to_vec();
    let from_proto = map_request(&decode::decode(&proto, Encoding::Protobuf, false, MAX).unwrap());
    let from_json =
        map_request(&decode::decode(JSON_FIXTURE.as_bytes(), Encoding::Json, false, MAX).unwrap());
    assert_eq!(from_proto.len(), 2);
    assert_eq!(from_proto, from_json);
    // gzip changes nothing.
    let gz = map_request(&decode::decode(&gzip(&proto), Encoding::Protobuf, true, MAX).unwrap());
    assert_eq!(gz, from_proto);
    let gz = map_request(&decode::decode(&gzip(JSON_FIXTURE.as_bytes()), Encoding::Json, true, MAX).unwrap());
    assert_eq!(gz, from_proto);
}

#[test]
fn bad_bodies_are_errors() {
    let proto = both_spans().encode_to_vec();
    let truncated = &proto[..proto.len() - 7];
    assert!(matches!(
        decode::decode(truncated, Encoding::Protobuf, false, MAX),
        Err(DecodeError::Protobuf(_))
    ));
    assert!(matches!(
        decode::decode(b"\xff\xff\xff\xff garbage", Encoding::Protobuf, false, MAX),
        Err(DecodeError::Protobuf(_))
    ));
    assert!(matches!(
        decode::decode(&JSON_FIXTURE.as_bytes()[..200], Encoding::Json, false, MAX),
        Err(DecodeError::Json(_))
    ));
    // A JSON span id that is not hex.
    let bad_id = JSON_FIXTURE.replace("00f067aa0ba902b7", "not-hex-at-all!!");
    assert!(matches!(
        decode::decode(bad_id.as_bytes(), Encoding::Json, false, MAX),
        Err(DecodeError::Json(_))
    ));
    // Not gzip at all, and a gzip stream cut short.
    assert!(matches!(decode::decode(&proto, Encoding::Protobuf, true, MAX), Err(DecodeError::Gzip(_))));
    let gz = gzip(&proto);
    assert!(matches!(
        decode::decode(&gz[..gz.len() / 2], Encoding::Protobuf, true, MAX),
        Err(DecodeError::Gzip(_))
    ));
    // A gzip bomb: 4 MiB of zeros in a few KiB.
    let bomb = gzip(&vec![0u8; 4 << 20]);
    assert!(bomb.len() < 64 * 1024);
    assert_eq!(decode::decode(&bomb, Encoding::Protobuf, true, MAX), Err(DecodeError::TooLarge(MAX)));
    // An empty body is a valid empty request.
    assert_eq!(decode::decode(b"", Encoding::Protobuf, false, MAX).unwrap().resource_spans.len(), 0);
}

#[test]
fn content_types() {
    assert_eq!(Encoding::from_content_type("application/x-protobuf"), Some(Encoding::Protobuf));
    assert_eq!(Encoding::from_content_type("application/protobuf"), Some(Encoding::Protobuf));
    assert_eq!(Encoding::from_content_type("Application/JSON; charset=utf-8"), Some(Encoding::Json));
    assert_eq!(Encoding::from_content_type("text/plain"), None);
}

// --- over TCP ---------------------------------------------------------------------------

struct Harness {
    rx: Receiver,
    got: Arc<Mutex<Vec<AppSpan>>>,
    open: Arc<Mutex<bool>>,
}

fn harness(cfg: Config) -> Harness {
    let got = Arc::new(Mutex::new(Vec::new()));
    let open = Arc::new(Mutex::new(true));
    let sink: Sink = {
        let (got, open) = (got.clone(), open.clone());
        Arc::new(move |spans| {
            if !*open.lock().unwrap() {
                return false;
            }
            got.lock().unwrap().extend(spans);
            true
        })
    };
    let rx = Receiver::start("127.0.0.1:0", cfg, sink).unwrap();
    Harness { rx, got, open }
}

struct Resp {
    code: u16,
    headers: String,
    body: Vec<u8>,
}

fn read_response(c: &mut TcpStream) -> Resp {
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = c.read(&mut b).unwrap();
        assert!(n > 0, "connection closed before a response");
        buf.extend_from_slice(&b[..n]);
    };
    let headers = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let code = headers[9..12].parse().unwrap();
    let len: usize = headers
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
        })
        .unwrap();
    while buf.len() < head_end + len {
        let n = c.read(&mut b).unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&b[..n]);
    }
    Resp { code, headers, body: buf[head_end..head_end + len].to_vec() }
}

fn connect(h: &Harness) -> TcpStream {
    let c = TcpStream::connect(h.rx.local_addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c
}

fn post(c: &mut TcpStream, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: collector\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    c.write_all(&bytes).unwrap();
    read_response(c)
}

const PB: (&str, &str) = ("Content-Type", "application/x-protobuf");
const JS: (&str, &str) = ("Content-Type", "application/json");
const GZ: (&str, &str) = ("Content-Encoding", "gzip");

#[test]
fn receiver_accepts_both_paths_and_encodings_on_one_connection() {
    let h = harness(Config::default());
    let mut c = connect(&h);
    let proto = both_spans().encode_to_vec();

    let r = post(&mut c, "/v1/traces", &[PB], &proto);
    assert_eq!(r.code, 200);
    assert!(r.headers.contains("Content-Type: application/x-protobuf"));
    assert!(r.body.is_empty(), "an empty ExportTraceServiceResponse is zero bytes");

    let r = post(&mut c, "/api/v1/otel/trace", &[JS, GZ], &gzip(JSON_FIXTURE.as_bytes()));
    assert_eq!(r.code, 200);
    assert!(r.headers.contains("Content-Type: application/json"));
    assert_eq!(r.body, b"{}");

    let r = post(&mut c, "/v1/traces?x=1", &[PB, GZ], &gzip(&proto));
    assert_eq!(r.code, 200);

    let got = h.got.lock().unwrap();
    assert_eq!(got.len(), 6);
    assert_eq!(got[0..2], got[2..4]);
    assert_eq!(got[0..2], got[4..6]);
    assert_eq!(h.rx.counters.exports_accepted.load(std::sync::atomic::Ordering::Relaxed), 3);
    assert_eq!(h.rx.counters.spans_received.load(std::sync::atomic::Ordering::Relaxed), 6);
    assert_eq!(h.rx.counters.rejected_total(), 0);
}

#[test]
fn receiver_takes_chunked_gzip_bodies() {
    let h = harness(Config::default());
    let mut c = connect(&h);
    let body = gzip(&both_spans().encode_to_vec());
    let mut req = b"POST /v1/traces HTTP/1.1\r\nHost: c\r\nContent-Type: application/x-protobuf\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for part in body.chunks(50) {
        req.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        req.extend_from_slice(part);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    // Sent in small writes, as a slow client would.
    for piece in req.chunks(7) {
        c.write_all(piece).unwrap();
    }
    assert_eq!(read_response(&mut c).code, 200);
    assert_eq!(h.got.lock().unwrap().len(), 2);
}

#[test]
fn receiver_refuses_what_it_cannot_take_and_counts_why() {
    let h = harness(Config { max_body: 64 * 1024, max_connections: 4 });
    let proto = both_spans().encode_to_vec();
    let counters = h.rx.counters.clone();

    let r = post(&mut connect(&h), "/v1/metrics", &[PB], &proto);
    assert_eq!(r.code, 404);
    assert!(String::from_utf8_lossy(&r.body).contains("/v1/traces"));
    assert_eq!(counters.rejected(Reject::NotFound), 1);

    let mut c = connect(&h);
    c.write_all(b"GET /v1/traces HTTP/1.1\r\nHost: c\r\n\r\n").unwrap();
    let r = read_response(&mut c);
    assert_eq!(r.code, 405);
    assert!(r.headers.contains("Allow: POST"));
    assert_eq!(counters.rejected(Reject::MethodNotAllowed), 1);

    let r = post(&mut connect(&h), "/v1/traces", &[("Content-Type", "text/plain")], &proto);
    assert_eq!(r.code, 415);
    let r = post(&mut connect(&h), "/v1/traces", &[PB, ("Content-Encoding", "br")], &proto);
    assert_eq!(r.code, 415);
    assert_eq!(counters.rejected(Reject::UnsupportedMediaType), 2);

    // Too large by Content-Length: refused before the body is read.
    let mut c = connect(&h);
    c.write_all(b"POST /v1/traces HTTP/1.1\r\nHost: c\r\nContent-Type: application/json\r\nContent-Length: 999999999\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut c).code, 413);
    // Too large once decompressed.
    let r = post(&mut connect(&h), "/v1/traces", &[PB, GZ], &gzip(&vec![0u8; 1 << 20]));
    assert_eq!(r.code, 413);
    assert_eq!(counters.rejected(Reject::TooLarge), 2);

    // Bad bodies: 400 with a google.rpc.Status in the request's encoding; the
    // connection stays usable.
    let mut c = connect(&h);
    let r = post(&mut c, "/v1/traces", &[PB], &proto[..proto.len() - 5]);
    assert_eq!(r.code, 400);
    let st = RpcStatus::decode(&r.body[..]).unwrap();
    assert_eq!(st.code, 3);
    assert!(st.message.contains("not a valid protobuf"), "{}", st.message);
    let r = post(&mut c, "/v1/traces", &[JS], b"{\"resourceSpans\": [");
    assert_eq!(r.code, 400);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(v["message"].as_str().unwrap().contains("OTLP/JSON"), "{v}");
    assert_eq!(post(&mut c, "/v1/traces", &[PB], &proto).code, 200, "still usable after a bad body");
    assert_eq!(counters.rejected(Reject::BadBody), 2);

    // Garbage instead of HTTP.
    let mut c = connect(&h);
    c.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c).code, 400);
    assert_eq!(counters.rejected(Reject::BadRequest), 1);

    // No spans were taken from any refused export.
    assert_eq!(h.got.lock().unwrap().len(), 2);
}

#[test]
fn receiver_limits_connections_and_refuses_after_close() {
    let h = harness(Config { max_body: 1 << 20, max_connections: 2 });
    let idle: Vec<TcpStream> = (0..2).map(|_| connect(&h)).collect();
    std::thread::sleep(Duration::from_millis(100));
    let r = post(&mut connect(&h), "/v1/traces", &[PB], &both_spans().encode_to_vec());
    assert_eq!(r.code, 503);
    assert_eq!(h.rx.counters.rejected(Reject::Busy), 1);
    drop(idle);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(post(&mut connect(&h), "/v1/traces", &[PB], &both_spans().encode_to_vec()).code, 200);

    *h.open.lock().unwrap() = false;
    let r = post(&mut connect(&h), "/v1/traces", &[JS], JSON_FIXTURE.as_bytes());
    assert_eq!(r.code, 503);
    assert_eq!(h.rx.counters.rejected(Reject::ShuttingDown), 1);
    h.rx.close();
    assert_eq!(post(&mut connect(&h), "/v1/traces", &[PB], &[]).code, 503);
    assert_eq!(h.got.lock().unwrap().len(), 2);
}
