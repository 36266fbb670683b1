//! Process selection from /proc: names match /proc/PID/comm; a PID selects
//! itself and all its descendants.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::Path;

use serde::Serialize;

use crate::tracker::ProcMeta;

/// Longest comm the kernel keeps (TASK_COMM_LEN - 1).
const COMM_MAX: usize = 15;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcEntry {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Filter {
    pub names: Vec<String>,
    pub pids: Vec<u32>,
}

/// Body of a `process` frame (plus `netns`, `container_id` and `gateway`,
/// additions documented in STREAM.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    pub process_name: String,
    pub cmdline: String,
    pub exe: Option<String>,
    pub netns: Option<u64>,
    pub container_id: Option<String>,
    pub gateway: Option<Gateway>,
}

impl ProcessInfo {
    pub fn meta(&self) -> ProcMeta {
        ProcMeta {
            name: self.process_name.clone(),
            netns: self.netns,
            container_id: self.container_id.clone(),
        }
    }
}

/// The API gateway (or proxy) a process belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Gateway {
    Nginx,
    Openresty,
    Kong,
    Apisix,
    Envoy,
}

/// Container id from the text of /proc/PID/cgroup: the 64-hex-digit id that
/// Docker, containerd, CRI-O and Podman put in the cgroup path, in cgroup v2
/// (`0::/system.slice/docker-ID.scope`) and v1 (`12:memory:/docker/ID`) forms,
/// with the cgroupfs (`/kubepods/burstable/podUID/ID`) and systemd
/// (`.../cri-containerd-ID.scope`, `...slice:cri-containerd:ID`) drivers. The v2
/// line wins; otherwise the first v1 line that names one. None outside containers.
pub fn container_id_of_cgroup(text: &str) -> Option<String> {
    let mut v1 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(hier), Some(_), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let found = container_id_of_path(path);
        if hier == "0" && found.is_some() {
            return found;
        }
        if v1.is_none() {
            v1 = found;
        }
    }
    v1
}

fn container_id_of_path(path: &str) -> Option<String> {
    for comp in path.rsplit('/') {
        let comp = comp.strip_suffix(".scope").unwrap_or(comp);
        // `kubepods-...slice:cri-containerd:ID` (systemd driver) or `prefix-ID`.
        let tail = comp.rsplit(':').next().unwrap_or(comp);
        let id = tail.rsplit('-').next().unwrap_or(tail);
        if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(id.to_ascii_lowercase());
        }
    }
    None
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Kong or APISIX from an nginx/OpenResty command line: Kong starts OpenResty as
/// `nginx -p /usr/local/kong -c nginx.conf`, APISIX as
/// `openresty -p /usr/local/apisix -c /usr/local/apisix/conf/nginx.conf` (their
/// documented layouts); a relocated prefix keeps its last path component.
fn gateway_of_prefix(args: &[&str]) -> Option<Gateway> {
    let mut hit = None;
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        let val = match *a {
            "-p" | "-c" => it.peek().copied().copied(),
            _ => a.strip_prefix("-p").or_else(|| a.strip_prefix("-c")).filter(|v| v.starts_with('/')),
        };
        let Some(v) = val else { continue };
        let comps: Vec<&str> = v.split('/').filter(|c| !c.is_empty()).collect();
        if comps.iter().any(|c| *c == "kong" || c.starts_with("kong_") || c.starts_with("kong-")) {
            hit = Some(Gateway::Kong);
        } else if comps.iter().any(|c| *c == "apisix" || c.starts_with("apisix-") || c.starts_with("apisix_"))
        {
            hit = Some(Gateway::Apisix);
        }
        if hit.is_some() {
            break;
        }
    }
    hit
}

/// Which gateway a process is, from its exe, its command line (nginx masters
/// rewrite theirs to `nginx: master process <argv>`) and, for nginx workers,
/// whose command line is only `nginx: worker process`, its parent's.
pub fn detect_gateway(exe: Option<&str>, cmdline: &str, parent_cmdline: Option<&str>) -> Option<Gateway> {
    let exe = exe.map(|e| e.strip_suffix(" (deleted)").unwrap_or(e));
    let args: Vec<&str> = cmdline.split_whitespace().collect();
    let argv0 = args.first().copied().unwrap_or("");
    let exe_base = exe.map(base_name).unwrap_or("");
    if exe_base == "envoy" || base_name(argv0) == "envoy" {
        return Some(Gateway::Envoy);
    }
    let nginx_master = cmdline.starts_with("nginx: master process");
    let nginx_other = cmdline.starts_with("nginx: ");
    let is_openresty = exe_base == "openresty"
        || exe.is_some_and(|e| e.contains("/openresty/"))
        || base_name(argv0) == "openresty"
        || args.iter().skip(3).take(1).any(|a| base_name(a) == "openresty" || a.contains("/openresty/"));
    let is_nginx = exe_base == "nginx" || base_name(argv0) == "nginx" || nginx_master || nginx_other;
    if !(is_openresty || is_nginx) {
        return None;
    }
    if let Some(g) = gateway_of_prefix(&args) {
        return Some(g);
    }
    if let Some(g) = exe.and_then(|e| gateway_of_prefix(&["-p", e])) {
        return Some(g);
    }
    if !nginx_master {
        if let Some(g) = parent_cmdline
            .filter(|p| p.starts_with("nginx: master process"))
            .and_then(|p| gateway_of_prefix(&p.split_whitespace().collect::<Vec<_>>()))
        {
            return Some(g);
        }
    }
    Some(if is_openresty { Gateway::Openresty } else { Gateway::Nginx })
}

/// (ppid, comm) from the text of /proc/PID/stat. comm may hold spaces and
/// parentheses, so it spans from the first '(' to the last ')'.
pub fn parse_stat(stat: &str) -> Option<(u32, String)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let _state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((ppid, comm))
}

/// Every process under `proc_root` (normally /proc); vanished ones are skipped.
pub fn list(proc_root: &Path) -> Vec<ProcEntry> {
    let Ok(dir) = fs::read_dir(proc_root) else { return Vec::new() };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = fs::read_to_string(e.path().join("stat")).ok()?;
        let (ppid, comm) = parse_stat(&stat)?;
        Some(ProcEntry { pid, ppid, comm })
    })
    .collect()
}

/// The pids the filter selects among `procs`, never `exclude` (ourselves).
pub fn select(procs: &[ProcEntry], filter: &Filter, exclude: u32) -> BTreeSet<u32> {
    let names: Vec<&str> = filter.names.iter().map(|n| &n[..n.len().min(COMM_MAX)]).collect();
    let parent: HashMap<u32, u32> = procs.iter().map(|p| (p.pid, p.ppid)).collect();
    let roots: BTreeSet<u32> = filter.pids.iter().copied().collect();
    let mut out = BTreeSet::new();
    for p in procs {
        if p.pid == exclude {
            continue;
        }
        if names.iter().any(|n| *n == p.comm) {
            out.insert(p.pid);
            continue;
        }
        if roots.is_empty() {
            continue;
        }
        // Walk up the ancestry, bounded against cycles in a racy snapshot.
        let mut cur = p.pid;
        for _ in 0..64 {
            if roots.contains(&cur) {
                out.insert(p.pid);
                break;
            }
            match parent.get(&cur) {
                Some(&pp) if pp != 0 && pp != cur => cur = pp,
                _ => break,
            }
        }
    }
    out
}

/// Inode of the process's network namespace.
pub fn netns_of(proc_root: &Path, pid: u32) -> Option<u64> {
    let link = fs::read_link(proc_root.join(pid.to_string()).join("ns/net")).ok()?;
    let s = link.to_str()?;
    s.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

fn cmdline_of(dir: &Path) -> Option<String> {
    fs::read(dir.join("cmdline")).ok().map(|b| {
        let s: Vec<String> = b
            .split(|&c| c == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        s.join(" ")
    })
}

pub fn info(proc_root: &Path, entry: &ProcEntry) -> ProcessInfo {
    let dir = proc_root.join(entry.pid.to_string());
    let cmdline = cmdline_of(&dir).unwrap_or_default();
    let exe = fs::read_link(dir.join("exe")).ok().map(|p| p.to_string_lossy().into_owned());
    let parent_cmdline = cmdline_of(&proc_root.join(entry.ppid.to_string()));
    let container_id = fs::read_to_string(dir.join("cgroup")).ok().and_then(|t| container_id_of_cgroup(&t));
    ProcessInfo {
        pid: entry.pid,
        ppid: entry.ppid,
        process_name: entry.comm.clone(),
        gateway: detect_gateway(exe.as_deref(), &cmdline, parent_cmdline.as_deref()),
        cmdline,
        exe,
        netns: netns_of(proc_root, entry.pid),
        container_id,
    }
}

/// Metadata of one pid straight from /proc (used for processes inherited through
/// fork before the next scan).
pub fn lookup(pid: u32) -> Option<ProcMeta> {
    let root = Path::new("/proc");
    let stat = fs::read_to_string(root.join(pid.to_string()).join("stat")).ok()?;
    let (_, comm) = parse_stat(&stat)?;
    let container_id = fs::read_to_string(root.join(pid.to_string()).join("cgroup"))
        .ok()
        .and_then(|t| container_id_of_cgroup(&t));
    Some(ProcMeta { name: comm, netns: netns_of(root, pid), container_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: u32, ppid: u32, comm: &str) -> ProcEntry {
        ProcEntry { pid, ppid, comm: comm.into() }
    }

    #[test]
    fn stat_with_odd_comm() {
        let s = "1234 (nginx: (worker) x) S 1200 1234 1234 0 -1 4194560 ...";
        assert_eq!(parse_stat(s), Some((1200, "nginx: (worker) x".into())));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn names_match_comm() {
        let procs = [
            p(1, 0, "systemd"),
            p(10, 1, "nginx"),
            p(11, 10, "nginx"),
            p(20, 1, "openresty"),
            p(30, 1, "bash"),
        ];
        let f = Filter { names: vec!["nginx".into(), "openresty".into()], pids: vec![] };
        assert_eq!(select(&procs, &f, 0), BTreeSet::from([10, 11, 20]));
    }

    #[test]
    fn pid_selects_descendants() {
        let procs = [
            p(1, 0, "init"),
            p(100, 1, "master"),
            p(101, 100, "worker"),
            p(102, 101, "helper"),
            p(200, 1, "other"),
        ];
        let f = Filter { names: vec![], pids: vec![100] };
        assert_eq!(select(&procs, &f, 0), BTreeSet::from([100, 101, 102]));
    }

    #[test]
    fn excludes_self_and_truncates_long_names() {
        let procs = [p(5, 1, "averyveryverylon"[..15].into()), p(6, 1, "nginx")];
        let f = Filter { names: vec!["averyveryverylongname".into(), "nginx".into()], pids: vec![] };
        assert_eq!(select(&procs, &f, 6), BTreeSet::from([5]));
    }

    #[test]
    fn cycles_do_not_hang() {
        let procs = [p(7, 8, "a"), p(8, 7, "b")];
        let f = Filter { names: vec![], pids: vec![99] };
        assert!(select(&procs, &f, 0).is_empty());
    }

    const ID: &str = "3f1c0a9e5b7d4c2a8e6f1b3d5c7a9e0f2b4d6c8e0a1b3c5d7e9f1a3b5c7d9e0f";

    #[test]
    fn container_ids_from_cgroup_files() {
        let cases = [
            // cgroup v2, Docker with the systemd driver
            (format!("0::/system.slice/docker-{ID}.scope\n"), Some(ID)),
            // cgroup v1, Docker with the cgroupfs driver (several hierarchies)
            (format!("12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n"), Some(ID)),
            // Kubernetes, containerd, systemd driver (v2)
            (
                format!("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b3c4d_5e6f_7a8b_9c0d_1e2f3a4b5c6d.slice/cri-containerd-{ID}.scope\n"),
                Some(ID),
            ),
            // Kubernetes, cgroupfs driver (v1)
            (format!("4:cpu,cpuacct:/kubepods/besteffort/pod1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d/{ID}\n"), Some(ID)),
            // CRI-O
            (format!("0::/kubepods.slice/kubepods-pod1.slice/crio-{ID}.scope\n"), Some(ID)),
            // containerd, systemd driver, colon form
            (format!("0::/system.slice/containerd.service/kubepods-besteffort-pod1.slice:cri-containerd:{ID}\n"), Some(ID)),
            // Podman
            (format!("0::/machine.slice/libpod-{ID}.scope/container\n"), Some(ID)),
            // Not in a container
            ("0::/init.scope\n".to_string(), None),
            ("0::/user.slice/user-0.slice/session-3.scope\n".to_string(), None),
            ("garbage".to_string(), None),
            (String::new(), None),
        ];
        for (text, want) in cases {
            assert_eq!(container_id_of_cgroup(&text).as_deref(), want, "{text}");
        }
        // Upper case ids are normalised; a short hex component is not an id.
        assert_eq!(container_id_of_cgroup(&format!("0::/docker/{}", ID.to_uppercase())).as_deref(), Some(ID));
        assert_eq!(container_id_of_cgroup("0::/system.slice/docker-abc123.scope"), None);
    }

    #[test]
    fn gateways_from_exe_and_cmdline() {
        use Gateway::*;
        type Case<'a> = (Option<&'a str>, &'a str, Option<&'a str>, Option<Gateway>);
        let cases: [Case; 12] = [
            // Debian's nginx
            (Some("/usr/sbin/nginx"), "nginx: master process /usr/sbin/nginx -g daemon on;", None, Some(Nginx)),
            (Some("/usr/sbin/nginx"), "nginx: worker process", Some("nginx: master process /usr/sbin/nginx"), Some(Nginx)),
            // OpenResty
            (
                Some("/usr/local/openresty/nginx/sbin/nginx"),
                "nginx: master process /usr/local/openresty/bin/openresty -g daemon off;",
                None,
                Some(Openresty),
            ),
            // Kong (documented process line) and its worker through the parent
            (
                Some("/usr/local/openresty/nginx/sbin/nginx"),
                "nginx: master process /usr/local/openresty/nginx/sbin/nginx -p /usr/local/kong -c nginx.conf",
                None,
                Some(Kong),
            ),
            (
                Some("/usr/local/openresty/nginx/sbin/nginx"),
                "nginx: worker process",
                Some("nginx: master process /usr/local/openresty/nginx/sbin/nginx -p /usr/local/kong -c nginx.conf"),
                Some(Kong),
            ),
            (Some("/usr/sbin/nginx"), "/usr/sbin/nginx -p /tmp/lab/kong/ -c nginx.conf", None, Some(Kong)),
            // APISIX
            (
                Some("/usr/local/openresty/nginx/sbin/nginx"),
                "nginx: master process /usr/bin/openresty -p /usr/local/apisix -c /usr/local/apisix/conf/nginx.conf",
                None,
                Some(Apisix),
            ),
            (
                Some("/usr/bin/openresty"),
                "nginx: worker process",
                Some("nginx: master process /usr/bin/openresty -p /usr/local/apisix -c /usr/local/apisix/conf/nginx.conf"),
                Some(Apisix),
            ),
            // Envoy
            (Some("/usr/local/bin/envoy"), "envoy -c /etc/envoy/envoy.yaml --log-level info", None, Some(Envoy)),
            // Not a gateway: a tool whose arguments mention kong
            (Some("/usr/bin/vim"), "vim /usr/local/kong/nginx.conf", None, None),
            (Some("/usr/bin/node"), "node upstream.mjs --name svca", None, None),
            // exe unreadable (another user's process): the command line still tells
            (None, "nginx: master process nginx -p /usr/local/kong -c nginx.conf", None, Some(Kong)),
        ];
        for (exe, cmd, parent, want) in cases {
            assert_eq!(detect_gateway(exe, cmd, parent), want, "{exe:?} {cmd:?}");
        }
    }

    /// A fake /proc with a Kong master (in a Docker container) and its worker.
    #[test]
    fn info_from_a_fixture_proc_tree() {
        let root = std::env::temp_dir().join(format!("td-procs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let write = |pid: u32, cmd: &[&str], cgroup: &str| {
            let d = root.join(pid.to_string());
            fs::create_dir_all(d.join("ns")).unwrap();
            let mut raw = cmd.join("\0").into_bytes();
            raw.push(0);
            fs::write(d.join("cmdline"), raw).unwrap();
            fs::write(d.join("cgroup"), cgroup).unwrap();
            std::os::unix::fs::symlink("/usr/local/openresty/nginx/sbin/nginx", d.join("exe")).unwrap();
            std::os::unix::fs::symlink("net:[4026532001]", d.join("ns/net")).unwrap();
        };
        let cg = format!("12:pids:/docker/{ID}\n0::/docker/{ID}\n");
        // nginx rewrites its argv into one string with spaces: that is what /proc shows.
        write(
            500,
            &["nginx: master process /usr/local/openresty/nginx/sbin/nginx -p /usr/local/kong -c nginx.conf"],
            &cg,
        );
        write(501, &["nginx: worker process"], &cg);
        let master = info(&root, &p(500, 1, "nginx"));
        let worker = info(&root, &p(501, 500, "nginx"));
        fs::remove_dir_all(&root).unwrap();
        for (i, pid, ppid) in [(&master, 500, 1), (&worker, 501, 500)] {
            assert_eq!((i.pid, i.ppid), (pid, ppid));
            assert_eq!(i.gateway, Some(Gateway::Kong), "pid {pid}");
            assert_eq!(i.container_id.as_deref(), Some(ID));
            assert_eq!(i.netns, Some(4026532001));
            assert_eq!(i.exe.as_deref(), Some("/usr/local/openresty/nginx/sbin/nginx"));
        }
        assert_eq!(worker.cmdline, "nginx: worker process");
        let json = serde_json::to_value(&master).unwrap();
        assert_eq!(json["gateway"], "kong");
        assert_eq!(json["container_id"], ID);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let all = list(Path::new("/proc"));
        let entry = all.iter().find(|e| e.pid == me).expect("own pid listed");
        let i = info(Path::new("/proc"), entry);
        assert!(!i.cmdline.is_empty());
        assert!(i.netns.is_some());
    }
}
