//! Ring-buffer records (struct event_hdr + payload, src/bpf/tapdeck.h) decoded
//! into owned Rust values. The header type itself is generated from BTF by
//! libbpf-cargo, so C and Rust share one definition.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use crate::bpf::types::event_hdr;

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const HEADER_SIZE: usize = std::mem::size_of::<event_hdr>();

// The C header promises a padding-free 112-byte layout.
const _: () = assert!(HEADER_SIZE == 112);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Data,
    Accept,
    Connect,
    Close,
    /// Plaintext of an OpenSSL call (src/bpf/tls.h): `sock` is the SSL pointer.
    TlsData,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syscall {
    Read,
    Write,
    Readv,
    Writev,
    Recvfrom,
    Sendto,
    Recvmsg,
    Sendmsg,
    Sendfile,
    Accept4,
    Connect,
    Close,
    SslRead,
    SslWrite,
    SslReadEx,
    SslWriteEx,
}

impl Syscall {
    fn from_u8(v: u8) -> Option<Self> {
        use Syscall::*;
        Some(match v {
            1 => Read,
            2 => Write,
            3 => Readv,
            4 => Writev,
            5 => Recvfrom,
            6 => Sendto,
            7 => Recvmsg,
            8 => Sendmsg,
            9 => Sendfile,
            10 => Accept4,
            11 => Connect,
            12 => Close,
            32 => SslRead,
            33 => SslWrite,
            34 => SslReadEx,
            35 => SslWriteEx,
            _ => return None,
        })
    }
}

pub const FLAG_PAYLOAD_FAULT: u8 = 1;

/// One decoded ring-buffer record.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: Kind,
    pub syscall: Syscall,
    pub direction: Direction,
    pub enter_ns: u64,
    pub exit_ns: u64,
    /// Connection key: the kernel's struct sock address.
    pub sock: u64,
    pub tgid: u32,
    pub tid: u32,
    pub fd: i32,
    /// Bytes the syscall moved; `payload` holds the first `payload.len()` of them.
    pub total: u32,
    pub tcp_seq: u32,
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
    pub comm: [u8; 16],
    pub flags: u8,
    /// A UDP socket (only datagrams to or from port 53 are traced); else TCP.
    pub udp: bool,
    pub payload: Vec<u8>,
}

impl Event {
    pub fn comm(&self) -> String {
        let end = self.comm.iter().position(|&b| b == 0).unwrap_or(self.comm.len());
        String::from_utf8_lossy(&self.comm[..end]).into_owned()
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than the {HEADER_SIZE}-byte header")]
    Short(usize),
    #[error("record announces {copied} payload bytes but carries {available}")]
    PayloadLength { copied: u32, available: usize },
    #[error("unknown event kind {0}")]
    Kind(u8),
    #[error("unknown syscall {0}")]
    Syscall(u8),
}

fn addr(family: u16, raw: &[u8; 16]) -> IpAddr {
    if family == AF_INET {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    } else {
        let v6 = Ipv6Addr::from(*raw);
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    }
}

/// Decodes one record.
pub fn decode(raw: &[u8]) -> Result<Event, DecodeError> {
    if raw.len() < HEADER_SIZE {
        return Err(DecodeError::Short(raw.len()));
    }
    // SAFETY: event_hdr is a plain-old-data repr(C) struct of integers and byte
    // arrays (every bit pattern is valid) and `raw` holds at least its size;
    // read_unaligned copes with any alignment of the ring-buffer slice.
    let h: event_hdr = unsafe { std::ptr::read_unaligned(raw.as_ptr().cast::<event_hdr>()) };
    let available = raw.len() - HEADER_SIZE;
    if h.copied as usize > available {
        return Err(DecodeError::PayloadLength { copied: h.copied, available });
    }
    let kind = match h.kind {
        1 => Kind::Data,
        2 => Kind::Accept,
        3 => Kind::Connect,
        4 => Kind::Close,
        16 => Kind::TlsData,
        k => return Err(DecodeError::Kind(k)),
    };
    let syscall = Syscall::from_u8(h.syscall).ok_or(DecodeError::Syscall(h.syscall))?;
    let mut comm = [0u8; 16];
    for (d, s) in comm.iter_mut().zip(h.comm.iter()) {
        *d = *s as u8;
    }
    Ok(Event {
        kind,
        syscall,
        direction: if h.direction == 1 { Direction::Egress } else { Direction::Ingress },
        enter_ns: h.enter_ns,
        exit_ns: h.exit_ns,
        sock: h.sock,
        tgid: h.tgid,
        tid: h.tid,
        fd: h.fd,
        total: h.total,
        tcp_seq: h.tcp_seq,
        local: (addr(h.family, &h.laddr), h.lport),
        remote: (addr(h.family, &h.raddr), h.rport),
        comm,
        flags: h.flags,
        udp: h.udp != 0,
        payload: raw[HEADER_SIZE..HEADER_SIZE + h.copied as usize].to_vec(),
    })
}

/// Test helper: the bytes of a record as the BPF side would write them.
#[cfg(test)]
pub fn encode_for_test(h: &event_hdr, payload: &[u8]) -> Vec<u8> {
    // SAFETY: event_hdr is repr(C) without padding (asserted above).
    let bytes = unsafe { std::slice::from_raw_parts((h as *const event_hdr).cast::<u8>(), HEADER_SIZE) };
    let mut v = bytes.to_vec();
    v.extend_from_slice(payload);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr() -> event_hdr {
        event_hdr {
            enter_ns: 10,
            exit_ns: 20,
            sock: 0xffff_8880_1234_5678,
            tgid: 100,
            tid: 101,
            fd: 7,
            total: 9000,
            copied: 5,
            tcp_seq: 4_000_000_000,
            family: AF_INET6,
            lport: 8080,
            rport: 51000,
            kind: 1,
            direction: 1,
            syscall: 4,
            ..Default::default()
        }
    }

    #[test]
    fn decodes_header_and_payload() {
        let mut h = hdr();
        h.laddr = Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped().octets();
        h.raddr = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets();
        for (d, s) in h.comm.iter_mut().zip(b"nginx\0") {
            *d = *s as i8;
        }
        let raw = encode_for_test(&h, b"HTTP/");
        let e = decode(&raw).unwrap();
        assert_eq!(e.kind, Kind::Data);
        assert_eq!(e.syscall, Syscall::Writev);
        assert_eq!(e.direction, Direction::Egress);
        assert_eq!(e.local, ("127.0.0.1".parse().unwrap(), 8080), "v4-mapped shown as v4");
        assert_eq!(e.remote, ("2001:db8::1".parse().unwrap(), 51000));
        assert_eq!(e.payload, b"HTTP/");
        assert_eq!(e.total, 9000);
        assert_eq!(e.comm(), "nginx");
    }

    #[test]
    fn rejects_short_and_inconsistent_records() {
        assert_eq!(decode(&[0u8; 10]), Err(DecodeError::Short(10)));
        let raw = encode_for_test(&hdr(), b"abc");
        assert_eq!(decode(&raw), Err(DecodeError::PayloadLength { copied: 5, available: 3 }));
        let mut h = hdr();
        h.kind = 99;
        assert_eq!(decode(&encode_for_test(&h, b"abcde")), Err(DecodeError::Kind(99)));
    }

    #[test]
    fn decodes_tls_plaintext_records() {
        let mut h = hdr();
        h.kind = 16;
        h.syscall = 34;
        h.direction = 0;
        h.fd = -1;
        h.sock = 0x5555_dead_beef;
        h.copied = 4;
        let e = decode(&encode_for_test(&h, b"GET ")).unwrap();
        assert_eq!((e.kind, e.syscall, e.direction), (Kind::TlsData, Syscall::SslReadEx, Direction::Ingress));
        assert_eq!(e.sock, 0x5555_dead_beef);
    }
}
