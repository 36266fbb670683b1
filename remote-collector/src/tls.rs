//! TLS plaintext: finds the libssl each traced process maps and attaches the
//! OpenSSL uprobes of src/bpf/tls.bpf.c to it, once per library file.
//!
//! A uprobe belongs to a file (its inode), not to a process: attached once with
//! pid -1 it fires in every process that maps that libssl, and the BPF side keeps
//! only the traced ones (the `pids` map, which forks of traced processes join at
//! once). So nginx workers forked later, and new processes that map an already
//! probed libssl, are covered without attaching again; a libssl not seen before
//! is attached at the next /proc scan (≤ 1 s). Processes that link OpenSSL
//! statically (or use another TLS library) are not covered.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use libbpf_rs::{Link, ProgramMut, UprobeMultiOpts, UprobeOpts};

use crate::bpf_tls::TlsProgs;

fn program<'a, 'obj>(progs: &'a TlsProgs<'obj>, name: &str) -> Option<&'a ProgramMut<'obj>> {
    Some(match name {
        "tls_enter_read" => &progs.tls_enter_read,
        "tls_exit_read" => &progs.tls_exit_read,
        "tls_enter_write" => &progs.tls_enter_write,
        "tls_exit_write" => &progs.tls_exit_write,
        "tls_enter_read_ex" => &progs.tls_enter_read_ex,
        "tls_exit_read_ex" => &progs.tls_exit_read_ex,
        "tls_enter_write_ex" => &progs.tls_enter_write_ex,
        "tls_exit_write_ex" => &progs.tls_exit_write_ex,
        _ => return None,
    })
}

/// The OpenSSL functions probed: (symbol, entry program, return program) by name.
pub const FUNCTIONS: [(&str, &str, &str); 4] = [
    ("SSL_read", "tls_enter_read", "tls_exit_read"),
    ("SSL_write", "tls_enter_write", "tls_exit_write"),
    ("SSL_read_ex", "tls_enter_read_ex", "tls_exit_read_ex"),
    ("SSL_write_ex", "tls_enter_write_ex", "tls_exit_write_ex"),
];

/// Paths of the libssl files mapped in the text of /proc/PID/maps (deduplicated,
/// in order of appearance). `libssl.so.3`, `libssl.so.1.1`, `libssl.so` and
/// OpenResty's own `.../openresty/openssl*/lib/libssl.so.*` all match; libssl3's
/// sibling libcrypto does not.
pub fn libssl_paths_in_maps(maps: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode pathname (the path may contain spaces)
        let mut cols = line.splitn(6, ' ');
        let path = match (cols.next(), cols.next(), cols.next(), cols.next(), cols.next(), cols.next()) {
            (Some(_), Some(_), Some(_), Some(_), Some(_), Some(rest)) => rest.trim_start(),
            _ => continue,
        };
        if !path.starts_with('/') || path.ends_with(" (deleted)") {
            continue;
        }
        let base = path.rsplit('/').next().unwrap_or(path);
        if (base == "libssl.so" || base.starts_with("libssl.so.")) && !out.iter().any(|p| p == path) {
            out.push(path.to_string());
        }
    }
    out
}

/// One probed library file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    /// The path as the first process that maps it sees it.
    pub path: String,
    /// Where the collector opened it: through /proc/PID/root, so a library in
    /// another mount namespace (a container) is the container's file.
    pub opened: PathBuf,
    /// Functions attached (the `_ex` variants are missing from OpenSSL 1.1.0 and older).
    pub functions: Vec<&'static str>,
}

/// Whether to attach through uprobe_multi links (Linux 6.6+). A classic uprobe is a
/// perf event, and the kernel tears perf-event probes down one after another, each
/// waiting for RCU grace periods: on the test VM one libssl's eight classic uprobes
/// made the stop 1.6–1.8 s instead of 1.0–1.1 s with uprobe_multi links, whose
/// releases overlap in the detach threads. `TAPDECK_UPROBE_MULTI=0` forces classic
/// uprobes (for comparison, or a kernel where uprobe_multi misbehaves).
pub fn uprobe_multi_wanted() -> bool {
    if std::env::var_os("TAPDECK_UPROBE_MULTI").is_some_and(|v| v == "0") {
        return false;
    }
    kernel_has_uprobe_multi(&crate::probe::uname().release)
}

pub fn kernel_has_uprobe_multi(release: &str) -> bool {
    crate::probe::parse_kernel_version(release).is_some_and(|[major, minor, _]| (major, minor) >= (6, 6))
}

/// The uprobes attached so far, keyed by (device, inode) of the library file.
#[derive(Default)]
pub struct TlsProbes {
    attached: BTreeMap<(u64, u64), Library>,
    failed: BTreeMap<(u64, u64), String>,
    pub links: Vec<Link>,
    /// The TLS programs were loaded for uprobe_multi links.
    multi: bool,
}

impl TlsProbes {
    pub fn new(multi: bool) -> Self {
        Self { multi, ..Self::default() }
    }

    pub fn libraries(&self) -> impl Iterator<Item = &Library> {
        self.attached.values()
    }

    pub fn take_links(&mut self) -> Vec<Link> {
        std::mem::take(&mut self.links)
    }

    /// Attaches to every libssl that `pid` maps and that is not probed yet.
    /// `progs` are the TLS skeleton's programs. Failures are logged
    /// once per library and do not stop the capture: TLS traffic of that library
    /// is then only counted as non-HTTP.
    pub fn scan(&mut self, proc_root: &Path, pid: u32, progs: &TlsProgs<'_>) {
        let dir = proc_root.join(pid.to_string());
        let Ok(maps) = fs::read_to_string(dir.join("maps")) else { return };
        for path in libssl_paths_in_maps(&maps) {
            let opened = dir.join("root").join(path.trim_start_matches('/'));
            let Ok(md) = fs::metadata(&opened) else { continue };
            let key = (md.dev(), md.ino());
            if self.attached.contains_key(&key) || self.failed.contains_key(&key) {
                continue;
            }
            match self.attach(&opened, progs) {
                Ok((links, functions)) => {
                    eprintln!(
                        "tapdeck-collector: TLS: probing {} ({}) for pid {pid}{}",
                        path,
                        functions.join(", "),
                        if self.multi { " (uprobe_multi)" } else { "" }
                    );
                    self.links.extend(links);
                    self.attached.insert(key, Library { path, opened, functions });
                }
                Err(e) => {
                    eprintln!("tapdeck-collector: TLS: not probing {path} (pid {pid}): {e:#}");
                    self.failed.insert(key, format!("{e:#}"));
                }
            }
        }
    }

    fn attach(&self, lib: &Path, progs: &TlsProgs<'_>) -> Result<(Vec<Link>, Vec<&'static str>)> {
        let mut links = Vec::new();
        let mut functions = Vec::new();
        for (func, enter, exit) in FUNCTIONS {
            let mut pair = Vec::new();
            for (prog, retprobe) in [(enter, false), (exit, true)] {
                let p =
                    program(progs, prog).with_context(|| format!("the TLS object has no program {prog}"))?;
                let attached = if self.multi {
                    let opts = UprobeMultiOpts { retprobe, ..Default::default() };
                    p.attach_uprobe_multi_with_opts(-1, lib, func, opts)
                } else {
                    let opts =
                        UprobeOpts { retprobe, func_name: Some(func.to_string()), ..Default::default() };
                    p.attach_uprobe_with_opts(-1, lib, 0, opts)
                };
                match attached {
                    Ok(l) => pair.push(l),
                    Err(e) => {
                        // SSL_read/SSL_write are required; the _ex variants are optional.
                        if func == "SSL_read" || func == "SSL_write" {
                            return Err(anyhow::Error::new(e).context(format!("attaching {func}")));
                        }
                        pair.clear();
                        break;
                    }
                }
            }
            if !pair.is_empty() {
                links.extend(pair);
                functions.push(func);
            }
        }
        Ok((links, functions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uprobe_multi_from_linux_6_6() {
        assert!(kernel_has_uprobe_multi("6.18.44-fc-v669"));
        assert!(kernel_has_uprobe_multi("6.6.0"));
        assert!(!kernel_has_uprobe_multi("6.5.13-generic"));
        assert!(!kernel_has_uprobe_multi("5.15.0-91-generic"));
        assert!(!kernel_has_uprobe_multi("garbage"));
    }

    #[test]
    fn finds_libssl_in_maps() {
        let maps = "\
55d0c8a00000-55d0c8a2e000 r--p 00000000 fe:01 1311234                    /usr/sbin/nginx
7f3a1c000000-7f3a1c021000 rw-p 00000000 00:00 0
7f3a1d200000-7f3a1d25f000 r--p 00000000 fe:01 1312001                    /usr/lib/x86_64-linux-gnu/libssl.so.3
7f3a1d25f000-7f3a1d2b9000 r-xp 0005f000 fe:01 1312001                    /usr/lib/x86_64-linux-gnu/libssl.so.3
7f3a1d400000-7f3a1d6b0000 r--p 00000000 fe:01 1312002                    /usr/lib/x86_64-linux-gnu/libcrypto.so.3
7f3a1e000000-7f3a1e010000 r-xp 00000000 fe:01 2000001                    /usr/local/openresty/openssl111/lib/libssl.so.1.1
7f3a1f000000-7f3a1f010000 r-xp 00000000 fe:01 2000002                    /opt/my app/lib/libssl.so
7f3a20000000-7f3a20010000 r-xp 00000000 fe:01 2000003                    /old/libssl.so.3 (deleted)
7f3a21000000-7f3a21010000 r-xp 00000000 fe:01 2000004                    /usr/lib/libssl3.so
7ffd5a5e4000-7ffd5a605000 rw-p 00000000 00:00 0                          [stack]
";
        assert_eq!(
            libssl_paths_in_maps(maps),
            vec![
                "/usr/lib/x86_64-linux-gnu/libssl.so.3",
                "/usr/local/openresty/openssl111/lib/libssl.so.1.1",
                "/opt/my app/lib/libssl.so",
            ]
        );
        assert!(libssl_paths_in_maps("").is_empty());
        assert!(libssl_paths_in_maps("garbage line\n").is_empty());
    }
}
