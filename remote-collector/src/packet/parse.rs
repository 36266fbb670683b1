//! IPv4/IPv6 + TCP header parsing of a captured packet.
//!
//! Packets come from AF_PACKET SOCK_DGRAM sockets, so they start at the network
//! header, and the kernel filter truncates them to the snap length: the payload
//! may be cut short. The parser therefore takes lengths from the IP header (what
//! was on the wire) and reports how much of the payload was captured, instead of
//! refusing a short packet (which is why this is not a strict parser crate).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
const IPPROTO_TCP: u8 = 6;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PacketError {
    #[error("packet shorter than its IP or TCP header")]
    Truncated,
    #[error("not an IPv4 or IPv6 packet")]
    NotIp,
    #[error("not TCP (or IPv6 extension headers before TCP)")]
    NotTcp,
    #[error("IPv4 fragment")]
    Fragment,
    #[error("inconsistent header lengths")]
    BadLength,
}

impl PacketError {
    pub fn kind(self) -> &'static str {
        match self {
            Self::Truncated => "packet_truncated",
            Self::NotIp => "packet_not_ip",
            Self::NotTcp => "packet_not_tcp",
            Self::Fragment => "packet_fragment",
            Self::BadLength => "packet_bad_length",
        }
    }
}

/// One TCP segment as seen on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment<'a> {
    pub src: (IpAddr, u16),
    pub dst: (IpAddr, u16),
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Payload bytes on the wire (from the IP length).
    pub payload_len: u32,
    /// The captured leading part of the payload (≤ payload_len).
    pub payload: &'a [u8],
}

impl Segment<'_> {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses a network-layer packet (`proto` is the link layer's ethertype).
pub fn parse(proto: u16, pkt: &[u8]) -> Result<Segment<'_>, PacketError> {
    let (src, dst, l4, l4_wire_len) = match proto {
        ETH_P_IP => {
            if pkt.len() < 20 {
                return Err(PacketError::Truncated);
            }
            if pkt[0] >> 4 != 4 {
                return Err(PacketError::NotIp);
            }
            let ihl = (pkt[0] & 0x0f) as usize * 4;
            let total = be16(pkt, 2) as usize;
            if ihl < 20 || total < ihl {
                return Err(PacketError::BadLength);
            }
            if pkt[9] != IPPROTO_TCP {
                return Err(PacketError::NotTcp);
            }
            // More-fragments set or a non-zero offset.
            if be16(pkt, 6) & 0x3fff != 0 {
                return Err(PacketError::Fragment);
            }
            if pkt.len() < ihl {
                return Err(PacketError::Truncated);
            }
            let s = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
            let d = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
            (IpAddr::V4(s), IpAddr::V4(d), &pkt[ihl..], total - ihl)
        }
        ETH_P_IPV6 => {
            if pkt.len() < 40 {
                return Err(PacketError::Truncated);
            }
            if pkt[0] >> 4 != 6 {
                return Err(PacketError::NotIp);
            }
            if pkt[6] != IPPROTO_TCP {
                return Err(PacketError::NotTcp);
            }
            let plen = be16(pkt, 4) as usize;
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&pkt[8..24]);
            d.copy_from_slice(&pkt[24..40]);
            let (s, d) = (Ipv6Addr::from(s), Ipv6Addr::from(d));
            let show = |a: Ipv6Addr| a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(a));
            (show(s), show(d), &pkt[40..], plen)
        }
        _ => return Err(PacketError::NotIp),
    };
    if l4.len() < 20 {
        return Err(PacketError::Truncated);
    }
    let doff = (l4[12] >> 4) as usize * 4;
    if doff < 20 || doff > l4_wire_len {
        return Err(PacketError::BadLength);
    }
    if l4.len() < doff {
        return Err(PacketError::Truncated);
    }
    let payload_len = (l4_wire_len - doff) as u32;
    let captured = &l4[doff..];
    let payload = &captured[..captured.len().min(payload_len as usize)];
    Ok(Segment {
        src: (src, be16(l4, 0)),
        dst: (dst, be16(l4, 2)),
        seq: be32(l4, 4),
        ack: be32(l4, 8),
        flags: l4[13],
        window: be16(l4, 14),
        payload_len,
        payload,
    })
}

#[cfg(test)]
pub mod fixtures {
    //! Builds IPv4/IPv6 TCP packets for tests.
    use std::net::IpAddr;

    pub fn tcp(
        src: (IpAddr, u16),
        dst: (IpAddr, u16),
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut t = Vec::with_capacity(20 + payload.len());
        t.extend_from_slice(&src.1.to_be_bytes());
        t.extend_from_slice(&dst.1.to_be_bytes());
        t.extend_from_slice(&seq.to_be_bytes());
        t.extend_from_slice(&ack.to_be_bytes());
        t.push(5 << 4);
        t.push(flags);
        t.extend_from_slice(&64240u16.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 0]);
        t.extend_from_slice(payload);
        match (src.0, dst.0) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut p = vec![0x45, 0];
                p.extend_from_slice(&((20 + t.len()) as u16).to_be_bytes());
                p.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
                p.extend_from_slice(&s.octets());
                p.extend_from_slice(&d.octets());
                p.extend_from_slice(&t);
                p
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut p = vec![0x60, 0, 0, 0];
                p.extend_from_slice(&(t.len() as u16).to_be_bytes());
                p.extend_from_slice(&[6, 64]);
                p.extend_from_slice(&s.octets());
                p.extend_from_slice(&d.octets());
                p.extend_from_slice(&t);
                p
            }
            _ => panic!("mixed address families"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::tcp;
    use super::*;

    fn v4(s: &str, p: u16) -> (IpAddr, u16) {
        (s.parse().unwrap(), p)
    }

    #[test]
    fn ipv4_segment() {
        let p =
            tcp(v4("198.18.0.10", 40000), v4("198.18.0.20", 80), 1000, 7, ACK | 0x08, b"GET / HTTP/1.1\r\n");
        let s = parse(ETH_P_IP, &p).unwrap();
        assert_eq!(s.src, v4("198.18.0.10", 40000));
        assert_eq!(s.dst, v4("198.18.0.20", 80));
        assert_eq!((s.seq, s.ack), (1000, 7));
        assert!(s.has(ACK) && !s.has(SYN));
        assert_eq!(s.payload_len, 16);
        assert_eq!(s.payload, b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn ipv6_segment_and_mapped() {
        let p = tcp(v4("::1", 5000), v4("::ffff:10.0.0.1", 80), 1, 2, SYN, b"");
        let s = parse(ETH_P_IPV6, &p).unwrap();
        assert_eq!(s.src.0, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(s.dst.0, "10.0.0.1".parse::<IpAddr>().unwrap(), "mapped addresses show as IPv4");
        assert!(s.has(SYN));
        assert_eq!(s.payload_len, 0);
    }

    #[test]
    fn truncated_payload_keeps_wire_length() {
        let body = vec![b'x'; 1000];
        let p = tcp(v4("1.2.3.4", 1), v4("5.6.7.8", 2), 9, 0, ACK, &body);
        let s = parse(ETH_P_IP, &p[..40 + 100]).unwrap();
        assert_eq!(s.payload_len, 1000);
        assert_eq!(s.payload.len(), 100);
    }

    #[test]
    fn garbage_and_short_headers() {
        let p = tcp(v4("1.2.3.4", 1), v4("5.6.7.8", 2), 9, 0, ACK, b"hi");
        assert_eq!(parse(ETH_P_IP, &p[..30]), Err(PacketError::Truncated));
        assert_eq!(parse(ETH_P_IP, &p[..10]), Err(PacketError::Truncated));
        assert_eq!(parse(0x0806, &p), Err(PacketError::NotIp));
        let mut udp = p.clone();
        udp[9] = 17;
        assert_eq!(parse(ETH_P_IP, &udp), Err(PacketError::NotTcp));
        let mut frag = p.clone();
        frag[6] = 0x20; // more fragments
        assert_eq!(parse(ETH_P_IP, &frag), Err(PacketError::Fragment));
        let mut bad = p.clone();
        bad[2] = 0;
        bad[3] = 10; // total length < header
        assert_eq!(parse(ETH_P_IP, &bad), Err(PacketError::BadLength));
        let mut v6 = p.clone();
        v6[0] = 0x65;
        assert_eq!(parse(ETH_P_IP, &v6), Err(PacketError::NotIp));
        assert_eq!(parse(ETH_P_IP, &[0xff; 64]), Err(PacketError::NotIp));
    }
}
