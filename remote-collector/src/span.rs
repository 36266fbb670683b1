//! The `span` frame body: DESIGN.md's record model, minus `node` (the reader
//! fills it in). Unknown values are JSON null.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Span {
    pub signal_source: &'static str,
    pub observation_point: &'static str,
    pub start_time_us: u64,
    pub end_time_us: u64,
    pub duration_us: u64,
    pub pid: u32,
    pub tid: u32,
    pub process_name: String,
    pub container_id: Option<String>,
    pub netns: Option<u64>,
    pub interface: Option<String>,
    pub client_ip: String,
    pub client_port: u16,
    pub server_ip: String,
    pub server_port: u16,
    pub l4_protocol: &'static str,
    pub l7_protocol: &'static str,
    /// The exchange was read as plaintext from OpenSSL (DeepFlow's `is_tls`).
    pub is_tls: bool,
    pub version: &'static str,
    pub request_type: String,
    pub request_domain: Option<String>,
    pub request_resource: String,
    pub endpoint: String,
    pub response_code: Option<u16>,
    pub response_status: &'static str,
    pub response_exception: Option<String>,
    pub request_length: u64,
    pub response_length: Option<u64>,
    pub x_request_id_0: Option<String>,
    pub x_request_id_1: Option<String>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub parent_span_id: Option<String>,
    pub syscall_trace_id_request: u64,
    pub syscall_trace_id_response: Option<u64>,
    pub req_tcp_seq: u32,
    pub resp_tcp_seq: Option<u32>,
    pub app_service: Option<String>,
    pub app_instance: Option<String>,
    pub attributes: Option<serde_json::Value>,
}

/// `response_status` from a status code (DESIGN.md's enumeration).
pub fn status_of(code: Option<u16>) -> &'static str {
    match code {
        Some(c) if (100..400).contains(&c) => "ok",
        Some(c) if (400..500).contains(&c) => "client_error",
        Some(c) if (500..600).contains(&c) => "server_error",
        _ => "unknown",
    }
}

/// Reason phrase for an error status when the server sent none.
pub fn canonical_reason(code: u16) -> Option<&'static str> {
    Some(match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        499 => "Client Closed Request",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(status_of(Some(200)), "ok");
        assert_eq!(status_of(Some(304)), "ok");
        assert_eq!(status_of(Some(404)), "client_error");
        assert_eq!(status_of(Some(502)), "server_error");
        assert_eq!(status_of(Some(600)), "unknown");
        assert_eq!(status_of(None), "unknown");
    }
}
