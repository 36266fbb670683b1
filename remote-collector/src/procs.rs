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

/// Body of a `process` frame (plus `netns`, an addition documented in STREAM.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    pub process_name: String,
    pub cmdline: String,
    pub exe: Option<String>,
    pub netns: Option<u64>,
}

impl ProcessInfo {
    pub fn meta(&self) -> ProcMeta {
        ProcMeta { name: self.process_name.clone(), netns: self.netns }
    }
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

pub fn info(proc_root: &Path, entry: &ProcEntry) -> ProcessInfo {
    let dir = proc_root.join(entry.pid.to_string());
    let cmdline = fs::read(dir.join("cmdline"))
        .map(|b| {
            let s: Vec<String> = b
                .split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            s.join(" ")
        })
        .unwrap_or_default();
    let exe = fs::read_link(dir.join("exe")).ok().map(|p| p.to_string_lossy().into_owned());
    ProcessInfo {
        pid: entry.pid,
        ppid: entry.ppid,
        process_name: entry.comm.clone(),
        cmdline,
        exe,
        netns: netns_of(proc_root, entry.pid),
    }
}

/// Metadata of one pid straight from /proc (used for processes inherited through
/// fork before the next scan).
pub fn lookup(pid: u32) -> Option<ProcMeta> {
    let root = Path::new("/proc");
    let stat = fs::read_to_string(root.join(pid.to_string()).join("stat")).ok()?;
    let (_, comm) = parse_stat(&stat)?;
    Some(ProcMeta { name: comm, netns: netns_of(root, pid) })
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
