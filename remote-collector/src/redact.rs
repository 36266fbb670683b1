//! Which header values may leave the node.
//!
//! Spans carry the values of a few headers only: Host (`request_domain`),
//! X-Request-ID, traceparent, and the headers the user asks for with
//! `--capture-header NAME` (in `attributes.headers` / `attributes.response_headers`).
//! `Authorization`, `Cookie`, `Set-Cookie` and `Proxy-Authorization`, and the names
//! given with `--redact-header NAME`, are redacted: a captured one is shipped as
//! `[REDACTED]`, and one that feeds a span field leaves that field null. Parsers
//! ask the policy before they copy any header value out of the bytes they parse.

use std::sync::OnceLock;

/// Always redacted, whatever the command line says.
pub const ALWAYS_REDACTED: [&str; 4] = ["authorization", "cookie", "set-cookie", "proxy-authorization"];
/// What a redacted captured header's value becomes.
pub const REDACTED: &str = "[REDACTED]";
/// Captured header values are cut to this many bytes (at a character boundary).
pub const MAX_CAPTURED_VALUE: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderPolicy {
    /// Lowercase names redacted on top of ALWAYS_REDACTED.
    redact: Vec<String>,
    /// Lowercase names whose values are copied into span attributes.
    capture: Vec<String>,
}

impl HeaderPolicy {
    pub fn new(redact: &[String], capture: &[String]) -> Self {
        let lower = |v: &[String]| {
            let mut v: Vec<String> = v.iter().map(|s| s.trim().to_ascii_lowercase()).collect();
            v.sort();
            v.dedup();
            v
        };
        Self { redact: lower(redact), capture: lower(capture) }
    }

    /// True when the value of header `name` must not leave the node.
    pub fn is_redacted(&self, name: &str) -> bool {
        ALWAYS_REDACTED.iter().any(|r| r.eq_ignore_ascii_case(name))
            || self.redact.iter().any(|r| r.eq_ignore_ascii_case(name))
    }

    /// True when the user asked for header `name` in span attributes.
    pub fn captures(&self, name: &str) -> bool {
        self.capture.iter().any(|c| c.eq_ignore_ascii_case(name))
    }

    pub fn captures_any(&self) -> bool {
        !self.capture.is_empty()
    }

    /// The value of a span field fed by header `name`: None when redacted.
    pub fn field(&self, name: &str, value: impl FnOnce() -> String) -> Option<String> {
        (!self.is_redacted(name)).then(value)
    }

    /// The value to ship for captured header `name` (lowercased name, value
    /// cut to MAX_CAPTURED_VALUE bytes, or REDACTED).
    pub fn captured(&self, name: &str, value: &[u8]) -> (String, String) {
        let name = name.to_ascii_lowercase();
        if self.is_redacted(&name) {
            return (name, REDACTED.to_string());
        }
        let text = String::from_utf8_lossy(value);
        let text = text.trim();
        let mut end = text.len().min(MAX_CAPTURED_VALUE);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        (name, text[..end].to_string())
    }

    pub fn redacted_names(&self) -> Vec<String> {
        let mut v: Vec<String> = ALWAYS_REDACTED.iter().map(|s| s.to_string()).collect();
        v.extend(self.redact.iter().cloned());
        v.sort();
        v.dedup();
        v
    }

    pub fn captured_names(&self) -> &[String] {
        &self.capture
    }
}

static POLICY: OnceLock<HeaderPolicy> = OnceLock::new();

/// Sets the process-wide policy (once, at start; later calls are ignored).
pub fn install(p: HeaderPolicy) {
    let _ = POLICY.set(p);
}

/// The process-wide policy: the defaults until `install` is called.
pub fn global() -> &'static HeaderPolicy {
    POLICY.get_or_init(HeaderPolicy::default)
}

/// Captured headers as a JSON object, or None when there are none.
pub fn to_json(headers: &[(String, String)]) -> Option<serde_json::Value> {
    if headers.is_empty() {
        return None;
    }
    let mut m = serde_json::Map::new();
    for (k, v) in headers {
        m.entry(k.clone()).or_insert_with(|| serde_json::Value::String(v.clone()));
    }
    Some(serde_json::Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_additions_are_redacted_case_insensitively() {
        let p = HeaderPolicy::new(&["X-Api-Key".into()], &["User-Agent".into(), "Cookie".into()]);
        for n in ["Authorization", "COOKIE", "set-cookie", "Proxy-Authorization", "x-api-key"] {
            assert!(p.is_redacted(n), "{n}");
        }
        assert!(!p.is_redacted("user-agent"));
        assert!(p.captures("user-agent") && p.captures("cookie") && !p.captures("host"));
        assert_eq!(p.captured("Cookie", b"sid=SECRET"), ("cookie".into(), REDACTED.into()));
        assert_eq!(p.captured("User-Agent", b" curl/8 "), ("user-agent".into(), "curl/8".into()));
        assert_eq!(p.field("x-api-key", || "k".into()), None);
        assert_eq!(p.field("host", || "h".into()), Some("h".into()));
        assert_eq!(p.redacted_names().len(), 5);
    }

    #[test]
    fn long_values_are_cut_at_a_character_boundary() {
        let p = HeaderPolicy::new(&[], &["x".into()]);
        let v = "é".repeat(200); // 400 bytes
        let (_, got) = p.captured("x", v.as_bytes());
        assert!(got.len() <= MAX_CAPTURED_VALUE && got.chars().all(|c| c == 'é'));
    }
}
