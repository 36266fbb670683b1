//! DNS over UDP (RFC 1035 §4.1): one message per datagram. Only the header and
//! the first question are read, so a datagram cut by the copy cap still gives
//! its id, rcode, answer count and query name. Queries and responses pair by
//! message id; whether a datagram is a query or a response comes from its QR
//! bit, not from the direction, so the session is the same on both ends.

use serde_json::json;

use crate::event::Direction;
use crate::l7::{Message, Request, Response, Session};
use crate::tracker::Meta;

const HEADER_LEN: usize = 12;
/// RFC 1035 §2.3.4: 255 octets on the wire; the dotted text is shorter.
const MAX_NAME: usize = 255;

/// The parts of a DNS message a span uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub response: bool,
    pub opcode: u8,
    pub rcode: u8,
    pub qdcount: u16,
    pub ancount: u16,
    /// First question: (name, qtype); None when the message has none or it
    /// was cut off by the copy cap.
    pub question: Option<(String, u16)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than the 12-byte header.
    Short,
    /// Opcode, counts or the question's name are not a DNS message's.
    Malformed,
}

/// Parses the header and the first question. A question that runs past the
/// end of `data` (copy cap) leaves `question` None; a malformed one is an error.
pub fn parse(data: &[u8]) -> Result<Header, ParseError> {
    if data.len() < HEADER_LEN {
        return Err(ParseError::Short);
    }
    let be16 = |i: usize| u16::from_be_bytes([data[i], data[i + 1]]);
    let flags = be16(2);
    let opcode = ((flags >> 11) & 0xf) as u8;
    let response = flags & 0x8000 != 0;
    // QUERY, IQUERY (obsolete), STATUS, NOTIFY, UPDATE; 3 and 6..15 are unassigned.
    if opcode == 3 || opcode > 5 {
        return Err(ParseError::Malformed);
    }
    let qdcount = be16(4);
    let ancount = be16(6);
    // A query carries no answers (NOTIFY and UPDATE may: their sections differ).
    if !response && opcode == 0 && ancount != 0 {
        return Err(ParseError::Malformed);
    }
    if qdcount > 1 && opcode == 0 {
        // Servers reject several questions per message; real traffic never has them.
        return Err(ParseError::Malformed);
    }
    let question = if qdcount == 0 { None } else { question(&data[HEADER_LEN..])? };
    Ok(Header { id: be16(0), response, opcode, rcode: (flags & 0xf) as u8, qdcount, ancount, question })
}

/// The first question's name and type; Ok(None) when cut off.
fn question(q: &[u8]) -> Result<Option<(String, u16)>, ParseError> {
    let mut name = String::new();
    let mut i = 0;
    loop {
        let Some(&len) = q.get(i) else { return Ok(None) };
        i += 1;
        if len == 0 {
            break;
        }
        // The question is the first name in the message: nothing to point back to.
        if len & 0xc0 != 0 {
            return Err(ParseError::Malformed);
        }
        let Some(label) = q.get(i..i + len as usize) else { return Ok(None) };
        i += len as usize;
        if !name.is_empty() {
            name.push('.');
        }
        for &b in label {
            if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                name.push(b as char);
            } else {
                name.push_str(&format!("\\{b:03}"));
            }
        }
        if i > MAX_NAME {
            return Err(ParseError::Malformed);
        }
    }
    let Some(t) = q.get(i..i + 2) else { return Ok(None) };
    if name.is_empty() {
        name.push('.');
    }
    Ok(Some((name, u16::from_be_bytes([t[0], t[1]]))))
}

/// IANA resource record type mnemonic, or RFC 3597's `TYPEn`.
pub fn qtype_name(t: u16) -> String {
    let s = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        41 => "OPT",
        43 => "DS",
        46 => "RRSIG",
        48 => "DNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        252 => "AXFR",
        255 => "ANY",
        257 => "CAA",
        _ => return format!("TYPE{t}"),
    };
    s.to_string()
}

/// RCODE mnemonic (RFC 1035, 2136).
pub fn rcode_name(r: u8) -> String {
    let s = match r {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        _ => return format!("RCODE{r}"),
    };
    s.to_string()
}

/// DeepFlow's rule: a malformed query (FORMERR) or a name that does not exist
/// (NXDOMAIN) is the client's fault; every other non-zero rcode the server's.
pub fn rcode_status(r: u8) -> &'static str {
    match r {
        0 => "ok",
        1 | 3 => "client_error",
        _ => "server_error",
    }
}

/// One UDP socket's DNS datagrams.
#[derive(Debug, Default)]
pub struct DnsSession;

impl DnsSession {
    pub fn new() -> Self {
        Self
    }
}

impl Session for DnsSession {
    fn protocol(&self) -> &'static str {
        "DNS"
    }

    fn feed(&mut self, _dir: Direction, data: &[u8], total: u64, meta: Meta, out: &mut Vec<Message>) {
        let h = match parse(data) {
            Ok(h) => h,
            Err(ParseError::Short) => return out.push(Message::Error("dns_short")),
            Err(ParseError::Malformed) => return out.push(Message::Error("dns_malformed")),
        };
        let key = h.id as u64;
        let length = total.max(data.len() as u64);
        if h.response {
            let exception = (h.rcode != 0).then(|| rcode_name(h.rcode));
            out.push(Message::Response {
                key,
                first: meta,
                last: meta,
                resp: Response {
                    code: Some(h.rcode as u16),
                    status: rcode_status(h.rcode),
                    exception,
                    length,
                    attributes: Some(json!({ "answers": h.ancount })),
                    ..Default::default()
                },
            });
        } else {
            let (name, qtype) = match h.question {
                Some((n, t)) => (n, qtype_name(t)),
                None => (String::new(), String::new()),
            };
            let request_type = if h.opcode == 0 { qtype } else { opcode_name(h.opcode).to_string() };
            out.push(Message::Request {
                key,
                first: meta,
                last: meta,
                req: Request {
                    l7_protocol: "DNS",
                    version: "",
                    request_type,
                    request_domain: (!name.is_empty()).then(|| name.clone()),
                    request_resource: name.clone(),
                    endpoint: name,
                    length,
                    ..Default::default()
                },
            });
        }
    }
}

fn opcode_name(op: u8) -> &'static str {
    match op {
        1 => "IQUERY",
        2 => "STATUS",
        4 => "NOTIFY",
        5 => "UPDATE",
        _ => "QUERY",
    }
}

/// Whether `data` looks like a DNS message: a header that parses with one
/// question (or a header-only cut).
pub fn looks_like_dns(data: &[u8]) -> bool {
    matches!(parse(data), Ok(h) if h.qdcount == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn meta(n: u64) -> Meta {
        Meta { enter_ns: n * 10, exit_ns: n * 10 + 5, tid: 7, seq: 0, trace_id: n }
    }

    /// A query for `name`/`qtype` as a stub resolver sends it (RD set, EDNS OPT).
    pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
        for l in name.split('.').filter(|l| !l.is_empty()) {
            v.push(l.len() as u8);
            v.extend_from_slice(l.as_bytes());
        }
        v.push(0);
        v.extend_from_slice(&qtype.to_be_bytes());
        v.extend_from_slice(&[0, 1]);
        // OPT pseudo-record: root name, type 41, UDP size 1232.
        v.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        v
    }

    /// The response to `query(...)` with `answers` A records (compressed names).
    pub fn response(q: &[u8], rcode: u8, answers: u16) -> Vec<u8> {
        let qend = HEADER_LEN + q[HEADER_LEN..].iter().position(|&b| b == 0).unwrap() + 5;
        let mut v = q[..qend].to_vec();
        v[2] = 0x81;
        v[3] = 0x80 | rcode;
        v[6..8].copy_from_slice(&answers.to_be_bytes());
        v[10..12].copy_from_slice(&[0, 0]);
        for i in 0..answers {
            v.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 18, 0, i as u8]);
        }
        v
    }

    fn feed(s: &mut DnsSession, data: &[u8], total: u64, n: u64) -> Vec<Message> {
        let mut out = Vec::new();
        s.feed(Direction::Egress, data, total, meta(n), &mut out);
        out
    }

    #[test]
    fn query_and_answer_pair_by_id() {
        let q = query(0xbeef, "svca.tdlab.test", 1);
        let mut s = DnsSession::new();
        let out = feed(&mut s, &q, q.len() as u64, 1);
        let Message::Request { key, req, first, .. } = &out[0] else { panic!("{out:?}") };
        assert_eq!(*key, 0xbeef);
        assert_eq!(first, &meta(1));
        assert_eq!(req.l7_protocol, "DNS");
        assert_eq!(req.request_type, "A");
        assert_eq!(req.request_resource, "svca.tdlab.test");
        assert_eq!(req.endpoint, "svca.tdlab.test");
        assert_eq!(req.request_domain.as_deref(), Some("svca.tdlab.test"));
        assert_eq!(req.length, q.len() as u64);

        let r = response(&q, 0, 2);
        let out = feed(&mut s, &r, r.len() as u64, 2);
        let Message::Response { key, resp, .. } = &out[0] else { panic!("{out:?}") };
        assert_eq!(*key, 0xbeef);
        assert_eq!(resp.code, Some(0));
        assert_eq!(resp.status, "ok");
        assert_eq!(resp.exception, None);
        assert_eq!(resp.attributes, Some(json!({"answers": 2})));
    }

    #[test]
    fn nxdomain_and_servfail() {
        let q = query(1, "nope.tdlab.test", 28);
        let mut s = DnsSession::new();
        let Message::Request { req, .. } = &feed(&mut s, &q, q.len() as u64, 1)[0] else { panic!() };
        assert_eq!(req.request_type, "AAAA");
        let out = feed(&mut s, &response(&q, 3, 0), 40, 2);
        let Message::Response { resp, .. } = &out[0] else { panic!() };
        assert_eq!(
            (resp.code, resp.status, resp.exception.as_deref()),
            (Some(3), "client_error", Some("NXDOMAIN"))
        );
        let out = feed(&mut s, &response(&q, 2, 0), 40, 3);
        let Message::Response { resp, .. } = &out[0] else { panic!() };
        assert_eq!((resp.status, resp.exception.as_deref()), ("server_error", Some("SERVFAIL")));
    }

    #[test]
    fn truncated_datagram_keeps_header() {
        let q = query(9, "a-very-long-label-for-the-copy-cap.example.org", 16);
        let r = response(&q, 0, 30);
        // Cut inside the answers: everything a span needs is there.
        let out = feed(&mut DnsSession::new(), &r[..80], r.len() as u64, 1);
        let Message::Response { resp, .. } = &out[0] else { panic!("{out:?}") };
        assert_eq!(resp.length, r.len() as u64, "length counts bytes beyond the cap");
        assert_eq!(resp.attributes, Some(json!({"answers": 30})));
        // Cut inside the question: the id still pairs, the name is unknown.
        let out = feed(&mut DnsSession::new(), &q[..20], q.len() as u64, 1);
        let Message::Request { key, req, .. } = &out[0] else { panic!("{out:?}") };
        assert_eq!((*key, req.request_resource.as_str(), req.request_domain.as_deref()), (9, "", None));
        // Every cut point of a query parses or is counted short, never panics.
        for cut in 0..q.len() {
            let out = feed(&mut DnsSession::new(), &q[..cut], q.len() as u64, 1);
            if cut < HEADER_LEN {
                assert_eq!(out, vec![Message::Error("dns_short")]);
            } else {
                assert!(matches!(out[0], Message::Request { key: 9, .. }), "cut {cut}: {out:?}");
            }
        }
    }

    #[test]
    fn oversized_name_and_garbage_are_errors() {
        let mut q = query(2, "x", 1);
        q.truncate(HEADER_LEN);
        for _ in 0..5 {
            q.push(63);
            q.extend_from_slice(&[b'a'; 63]);
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(parse(&q), Err(ParseError::Malformed), "name longer than 255 octets");
        assert_eq!(
            feed(&mut DnsSession::new(), b"GET / HTTP/1.1\r\n\r\n", 18, 1),
            vec![Message::Error("dns_malformed")]
        );
        let mut ptr = query(3, "x", 1);
        ptr[HEADER_LEN] = 0xc0;
        assert_eq!(parse(&ptr), Err(ParseError::Malformed), "the question cannot be a pointer");
        assert!(!looks_like_dns(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00"));
    }

    #[test]
    fn odd_labels_are_escaped() {
        let mut q = query(4, "ab", 1);
        q[HEADER_LEN + 1] = b'.';
        q[HEADER_LEN + 2] = 0x07;
        let h = parse(&q).unwrap();
        assert_eq!(h.question, Some(("\\046\\007".to_string(), 1)));
        assert_eq!(parse(&query(5, "", 2)).unwrap().question, Some((".".to_string(), 2)));
    }
}

#[cfg(test)]
mod detect_tests {
    use crate::event::Direction::{Egress as W, Ingress as R};
    use crate::l7::detect;

    #[test]
    fn detect_dns_over_udp_port_53() {
        let q = super::tests::query(7, "svca.tdlab.test", 1);
        assert_eq!(detect(W, &q, 40000, 53, true).map(|s| s.protocol()), Some("DNS"));
        assert_eq!(detect(R, &q, 53, 40000, true).map(|s| s.protocol()), Some("DNS"));
        assert!(detect(W, &q, 40000, 5353, true).is_none(), "port 53 only");
        assert!(detect(W, &q, 40000, 53, false).is_none(), "UDP only");
        assert!(detect(W, b"not a dns message at all", 40000, 53, true).is_none());
    }
}
