//! Network namespaces of the node, their interfaces and addresses, and the rule
//! that names an observation point.
//!
//! Namespaces are found through /proc/*/ns/net and /run/netns/* (named ones that
//! may have no process), deduplicated by inode. Work inside a namespace (opening
//! the packet socket, dumping links and addresses over rtnetlink) runs on a
//! short-lived helper thread that `setns`es into it: a socket stays bound to the
//! namespace it was created in, and no other thread changes namespace.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::table::{Tap, Topology};

/// One interface of a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interface {
    pub ifindex: u32,
    pub name: String,
    /// rtnetlink link kind (`veth`, `bridge`, ...), null for physical NICs.
    pub kind: Option<String>,
    /// Peer ifindex of a veth (IFLA_LINK), possibly in another namespace.
    pub link: Option<u32>,
    pub loopback: bool,
    pub addresses: Vec<String>,
}

/// The body of a `netns` frame (STREAM.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetnsInfo {
    pub netns: u64,
    /// Names under /run/netns (`ip netns`), if any.
    pub names: Vec<String>,
    /// True for the collector's own namespace (the node's network when started over SSH).
    pub host: bool,
    pub interfaces: Vec<Interface>,
    #[serde(skip)]
    pub path: PathBuf,
}

impl NetnsInfo {
    fn has_addr(&self, ip: IpAddr) -> bool {
        let s = ip.to_string();
        self.interfaces.iter().any(|i| !i.loopback && i.addresses.contains(&s))
    }
}

pub fn inode_of(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Every network namespace: inode → (a path that opens it, its /run/netns names).
pub fn list() -> BTreeMap<u64, (PathBuf, Vec<String>)> {
    let mut out: BTreeMap<u64, (PathBuf, Vec<String>)> = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir("/run/netns") {
        for e in rd.flatten() {
            let p = e.path();
            if let Some(ino) = inode_of(&p) {
                let name = e.file_name().to_string_lossy().into_owned();
                out.entry(ino).or_insert_with(|| (p.clone(), Vec::new())).1.push(name);
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let name = e.file_name();
            if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let p = e.path().join("ns/net");
            if let Some(ino) = inode_of(&p) {
                out.entry(ino).or_insert_with(|| (p, Vec::new()));
            }
        }
    }
    for (_, names) in out.values_mut() {
        names.sort();
    }
    out
}

/// Runs `f` on a helper thread inside the namespace at `path`.
pub fn in_netns<R, F>(path: &Path, f: F) -> io::Result<R>
where
    R: Send + 'static,
    F: FnOnce() -> io::Result<R> + Send + 'static,
{
    let file = File::open(path)?;
    std::thread::Builder::new()
        .name("netns-helper".into())
        .spawn(move || {
            // SAFETY: setns on this thread only; the fd is open for the call.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            f()
        })?
        .join()
        .map_err(|_| io::Error::other("the namespace helper thread panicked"))?
}

// rtnetlink constants (linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h).
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINK: u16 = 5;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const ARPHRD_LOOPBACK: u16 = 772;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// (type, payload) of each rtattr in `b`.
fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((ty, &b[4..len]));
        b = &b[align4(len).min(b.len())..];
    }
    out
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Sends one rtnetlink dump request and returns the payload of every answer message.
fn dump(msg_type: u16, body: &[u8]) -> io::Result<Vec<(u16, Vec<u8>)>> {
    dump_on(libc::NETLINK_ROUTE, msg_type, body)
}

/// Sends one dump request on a netlink family and returns every answer's payload.
fn dump_on(family: i32, msg_type: u16, body: &[u8]) -> io::Result<Vec<(u16, Vec<u8>)>> {
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, family) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = Vec::with_capacity(16 + body.len());
    req.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    req.extend_from_slice(&msg_type.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(body);
    // SAFETY: send reads `req`, which outlives the call.
    if unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: recv writes at most buf.len() bytes into buf.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut b = &buf[..n as usize];
        if b.is_empty() {
            return Ok(out);
        }
        while b.len() >= 16 {
            let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
            let ty = u16::from_ne_bytes([b[4], b[5]]);
            if len < 16 || len > b.len() {
                return Ok(out);
            }
            match ty {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let code =
                        b.get(16..20).map(|e| i32::from_ne_bytes([e[0], e[1], e[2], e[3]])).unwrap_or(0);
                    if code != 0 {
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                }
                _ => out.push((ty, b[16..len].to_vec())),
            }
            b = &b[align4(len).min(b.len())..];
        }
    }
}

/// Links and addresses of the calling thread's namespace.
pub fn interfaces() -> io::Result<Vec<Interface>> {
    let mut ifs: BTreeMap<u32, Interface> = BTreeMap::new();
    for (ty, m) in dump(RTM_GETLINK, &[0u8; 16])? {
        if ty != RTM_NEWLINK || m.len() < 16 {
            continue;
        }
        let arphrd = u16::from_ne_bytes([m[2], m[3]]);
        let ifindex = i32::from_ne_bytes([m[4], m[5], m[6], m[7]]) as u32;
        let mut i = Interface {
            ifindex,
            name: String::new(),
            kind: None,
            link: None,
            loopback: arphrd == ARPHRD_LOOPBACK,
            addresses: Vec::new(),
        };
        for (t, v) in attrs(&m[16..]) {
            match t {
                IFLA_IFNAME => i.name = cstr(v),
                IFLA_LINK if v.len() >= 4 => i.link = Some(u32::from_ne_bytes([v[0], v[1], v[2], v[3]])),
                IFLA_LINKINFO => {
                    for (k, kv) in attrs(v) {
                        if k == IFLA_INFO_KIND {
                            i.kind = Some(cstr(kv));
                        }
                    }
                }
                _ => {}
            }
        }
        ifs.insert(ifindex, i);
    }
    for (ty, m) in dump(RTM_GETADDR, &[0u8; 8])? {
        if ty != RTM_NEWADDR || m.len() < 8 {
            continue;
        }
        let family = m[0] as i32;
        let ifindex = u32::from_ne_bytes([m[4], m[5], m[6], m[7]]);
        let mut addr = None;
        for (t, v) in attrs(&m[8..]) {
            let ip = match (family, v.len()) {
                (libc::AF_INET, 4) => IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3])),
                (libc::AF_INET6, 16) => {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(v);
                    IpAddr::V6(Ipv6Addr::from(o))
                }
                _ => continue,
            };
            // IFA_LOCAL is the local address on point-to-point links; prefer it.
            if t == IFA_LOCAL || (t == IFA_ADDRESS && addr.is_none()) {
                addr = Some(ip);
            }
        }
        if let (Some(a), Some(i)) = (addr, ifs.get_mut(&ifindex)) {
            i.addresses.push(a.to_string());
        }
    }
    Ok(ifs.into_values().collect())
}

/// One TCP socket of the calling thread's namespace, from sock_diag (INET_DIAG_INFO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagTcp {
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
    pub state: u8,
    pub bytes_acked: u64,
    pub bytes_received: u64,
    pub segs_out: u32,
    pub segs_in: u32,
    pub rtt_us: u32,
    pub total_retrans: u32,
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const INET_DIAG_INFO: u16 = 2;
/// struct inet_diag_msg, then rtattrs.
const DIAG_MSG_LEN: usize = 72;

fn diag_addr(family: u8, b: &[u8]) -> IpAddr {
    if family == libc::AF_INET as u8 {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    } else {
        let mut o = [0u8; 16];
        o.copy_from_slice(&b[..16]);
        let a = Ipv6Addr::from(o);
        a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(a))
    }
}

/// Parses one inet_diag_msg with its INET_DIAG_INFO (struct tcp_info) attribute.
pub fn parse_diag(m: &[u8]) -> Option<DiagTcp> {
    if m.len() < DIAG_MSG_LEN {
        return None;
    }
    let family = m[0];
    let u32_at =
        |b: &[u8], at: usize| b.get(at..at + 4).map(|v| u32::from_ne_bytes([v[0], v[1], v[2], v[3]]));
    let u64_at =
        |b: &[u8], at: usize| b.get(at..at + 8).map(|v| u64::from_ne_bytes(v.try_into().expect("8")));
    let info = attrs(&m[DIAG_MSG_LEN..]).into_iter().find(|(t, _)| *t == INET_DIAG_INFO).map(|(_, v)| v)?;
    Some(DiagTcp {
        local: (diag_addr(family, &m[8..24]), u16::from_be_bytes([m[4], m[5]])),
        remote: (diag_addr(family, &m[24..40]), u16::from_be_bytes([m[6], m[7]])),
        state: m[1],
        // struct tcp_info (linux/tcp.h): fields present since Linux 4.6.
        rtt_us: u32_at(info, 68)?,
        total_retrans: u32_at(info, 100)?,
        bytes_acked: u64_at(info, 120)?,
        bytes_received: u64_at(info, 128)?,
        segs_out: u32_at(info, 136)?,
        segs_in: u32_at(info, 140)?,
    })
}

/// Every TCP socket of the calling thread's namespace (IPv4 and IPv6), with tcp_info.
pub fn tcp_sockets() -> io::Result<Vec<DiagTcp>> {
    let mut out = Vec::new();
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        // struct inet_diag_req_v2: family, protocol, ext, pad, states, sockid (48 bytes).
        let mut req = vec![0u8; 56];
        req[0] = family;
        req[1] = libc::IPPROTO_TCP as u8;
        req[2] = 1 << (INET_DIAG_INFO - 1);
        req[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
        for (ty, m) in dump_on(libc::NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, &req)? {
            if ty == SOCK_DIAG_BY_FAMILY {
                out.extend(parse_diag(&m));
            }
        }
    }
    Ok(out)
}

/// What the capture knows about the node's namespaces; decides observation points.
///
/// The rule (DeepFlow's tap sides, for one node without Kubernetes metadata):
/// - `local`: a loopback interface.
/// - `c` / `s`: a pod-side NIC, i.e. an interface inside a namespace other than
///   the host's, or a host-side veth whose peer lives in such a namespace; `c`
///   when the flow's client address belongs to that namespace, `s` when its
///   server address does.
/// - `c-nd` / `s-nd`: any other interface of the host namespace (physical NIC,
///   bridge): `c-nd` when the client address belongs to any namespace of this
///   node, else `s-nd` when the server address does.
/// - `rest`: none of the above (e.g. traffic routed through this node).
#[derive(Debug, Clone, Default)]
pub struct NodeTopology {
    pub host: u64,
    pub netns: HashMap<u64, NetnsInfo>,
}

impl NodeTopology {
    fn iface(&self, tap: &Tap) -> Option<&Interface> {
        self.netns.get(&tap.netns)?.interfaces.iter().find(|i| i.ifindex == tap.ifindex)
    }

    /// The namespace at the other end of a host-side veth.
    fn veth_peer_ns(&self, i: &Interface) -> Option<&NetnsInfo> {
        let peer = i.link?;
        self.netns.values().find(|n| {
            n.netns != self.host
                && n.interfaces.iter().any(|p| p.ifindex == peer && p.link == Some(i.ifindex))
        })
    }
}

impl Topology for Arc<NodeTopology> {
    fn observation_point(&self, tap: &Tap, client: IpAddr, server: IpAddr) -> &'static str {
        let Some(i) = self.iface(tap) else { return "rest" };
        if i.loopback {
            return "local";
        }
        let pod_ns = if tap.netns != self.host {
            self.netns.get(&tap.netns)
        } else if i.kind.as_deref() == Some("veth") {
            self.veth_peer_ns(i)
        } else {
            None
        };
        match pod_ns {
            Some(ns) if ns.has_addr(client) => "c",
            Some(ns) if ns.has_addr(server) => "s",
            Some(_) => "rest",
            None if self.netns.values().any(|n| n.has_addr(client)) => "c-nd",
            None if self.netns.values().any(|n| n.has_addr(server)) => "s-nd",
            None => "rest",
        }
    }

    fn interface_name(&self, tap: &Tap) -> Arc<str> {
        match self.iface(tap) {
            Some(i) => Arc::from(i.name.as_str()),
            None => Arc::from(format!("if{}", tap.ifindex)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(ifindex: u32, name: &str, kind: Option<&str>, link: Option<u32>, addrs: &[&str]) -> Interface {
        Interface {
            ifindex,
            name: name.into(),
            kind: kind.map(str::to_string),
            link,
            loopback: name == "lo",
            addresses: addrs.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn ns(netns: u64, host: bool, interfaces: Vec<Interface>) -> NetnsInfo {
        NetnsInfo { netns, names: vec![], host, interfaces, path: PathBuf::new() }
    }

    /// The lab: host with a bridge and two veths; client and gateway namespaces.
    fn lab() -> Arc<NodeTopology> {
        let mut m = HashMap::new();
        m.insert(
            1,
            ns(
                1,
                true,
                vec![
                    iface(1, "lo", None, None, &["127.0.0.1"]),
                    iface(2, "ens3", None, None, &["10.0.0.5"]),
                    iface(10, "tdlab0", Some("bridge"), None, &["198.18.0.1"]),
                    iface(11, "tdv-client", Some("veth"), Some(2), &[]),
                    iface(12, "tdv-gw", Some("veth"), Some(2), &[]),
                ],
            ),
        );
        m.insert(
            2,
            ns(
                2,
                false,
                vec![
                    iface(1, "lo", None, None, &["127.0.0.1"]),
                    iface(2, "eth0", Some("veth"), Some(11), &["198.18.0.10"]),
                ],
            ),
        );
        m.insert(
            3,
            ns(
                3,
                false,
                vec![
                    iface(1, "lo", None, None, &["127.0.0.1"]),
                    iface(2, "eth0", Some("veth"), Some(12), &["198.18.0.20"]),
                ],
            ),
        );
        Arc::new(NodeTopology { host: 1, netns: m })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn observation_points_in_the_lab() {
        let t = lab();
        let (c, g) = (ip("198.18.0.10"), ip("198.18.0.20"));
        let tap = |netns, ifindex| Tap { netns, ifindex };
        assert_eq!(t.observation_point(&tap(2, 2), c, g), "c", "client's own NIC");
        assert_eq!(t.observation_point(&tap(1, 11), c, g), "c", "host side of the client's veth");
        assert_eq!(t.observation_point(&tap(1, 12), c, g), "s", "host side of the gateway's veth");
        assert_eq!(t.observation_point(&tap(3, 2), c, g), "s", "gateway's own NIC");
        assert_eq!(t.observation_point(&tap(2, 1), c, g), "local");
        assert_eq!(t.observation_point(&tap(1, 2), ip("10.0.0.5"), ip("1.1.1.1")), "c-nd");
        assert_eq!(t.observation_point(&tap(1, 2), ip("1.1.1.1"), ip("198.18.0.20")), "s-nd");
        assert_eq!(t.observation_point(&tap(1, 2), ip("1.1.1.1"), ip("2.2.2.2")), "rest");
        assert_eq!(t.observation_point(&tap(9, 9), c, g), "rest", "unknown interface");
        assert_eq!(&*t.interface_name(&tap(1, 12)), "tdv-gw");
        assert_eq!(&*t.interface_name(&tap(1, 99)), "if99");
    }

    #[test]
    fn sock_diag_message() {
        let mut m = vec![0u8; DIAG_MSG_LEN];
        m[0] = libc::AF_INET as u8;
        m[1] = 1; // ESTABLISHED
        m[4..6].copy_from_slice(&40000u16.to_be_bytes());
        m[6..8].copy_from_slice(&80u16.to_be_bytes());
        m[8..12].copy_from_slice(&[198, 18, 0, 10]);
        m[24..28].copy_from_slice(&[198, 18, 0, 20]);
        let mut info = vec![0u8; 232];
        info[68..72].copy_from_slice(&250u32.to_ne_bytes());
        info[100..104].copy_from_slice(&2u32.to_ne_bytes());
        info[120..128].copy_from_slice(&108u64.to_ne_bytes());
        info[128..136].copy_from_slice(&304u64.to_ne_bytes());
        info[136..140].copy_from_slice(&5u32.to_ne_bytes());
        info[140..144].copy_from_slice(&4u32.to_ne_bytes());
        m.extend_from_slice(&((4 + info.len()) as u16).to_ne_bytes());
        m.extend_from_slice(&INET_DIAG_INFO.to_ne_bytes());
        m.extend_from_slice(&info);
        let d = parse_diag(&m).unwrap();
        assert_eq!(d.local, ("198.18.0.10".parse().unwrap(), 40000));
        assert_eq!(d.remote, ("198.18.0.20".parse().unwrap(), 80));
        assert_eq!((d.bytes_acked, d.bytes_received, d.segs_out, d.segs_in), (108, 304, 5, 4));
        assert_eq!((d.rtt_us, d.total_retrans, d.state), (250, 2, 1));
        assert_eq!(parse_diag(&m[..DIAG_MSG_LEN]), None, "no tcp_info attribute");
        assert_eq!(parse_diag(&m[..40]), None);
    }

    #[test]
    fn rtattr_walk_stops_at_garbage() {
        let mut b = Vec::new();
        b.extend_from_slice(&8u16.to_ne_bytes());
        b.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
        b.extend_from_slice(b"lo\0\0");
        b.extend_from_slice(&200u16.to_ne_bytes()); // longer than what is left
        b.extend_from_slice(&1u16.to_ne_bytes());
        let a = attrs(&b);
        assert_eq!(a.len(), 1);
        assert_eq!(cstr(a[0].1), "lo");
    }
}
