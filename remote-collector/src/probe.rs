//! What the node offers and what the collector needs: kernel ≥ 5.8 (ring
//! buffer), kernel BTF (CO-RE), root or CAP_BPF+CAP_PERFMON, tracefs and the
//! syscall tracepoints. Used by `--probe` and at start.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub const MIN_KERNEL: (u32, u32) = (5, 8);
pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

/// The raw tracepoints (events/raw_syscalls/...) the BPF object attaches to.
pub const RAW_SYSCALL_TRACEPOINTS: [&str; 2] = ["sys_enter", "sys_exit"];

const TRACEFS_DIRS: [&str; 2] = ["/sys/kernel/debug/tracing", "/sys/kernel/tracing"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tracefs {
    /// Already mounted at this path.
    Mounted(String),
    /// Mounted at /sys/kernel/tracing inside the collector's own mount namespace
    /// (nothing is left behind on the node).
    PrivateMount(String),
    Unavailable(String),
}

impl Tracefs {
    pub fn path(&self) -> Option<&str> {
        match self {
            Tracefs::Mounted(p) | Tracefs::PrivateMount(p) => Some(p),
            Tracefs::Unavailable(_) => None,
        }
    }
}

fn tracefs_with_events() -> Option<String> {
    TRACEFS_DIRS.iter().find(|d| Path::new(d).join("events/raw_syscalls").is_dir()).map(|d| d.to_string())
}

/// Finds tracefs, or mounts it privately. Must run before any thread is started:
/// unshare(CLONE_NEWNS) refuses multi-threaded callers.
pub fn ensure_tracefs() -> Tracefs {
    if let Some(p) = tracefs_with_events() {
        return Tracefs::Mounted(p);
    }
    // SAFETY: plain syscalls with constant, NUL-terminated arguments.
    unsafe {
        if libc::geteuid() != 0 {
            return Tracefs::Unavailable("tracefs is not mounted and mounting it needs root".into());
        }
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Tracefs::Unavailable(format!(
                "unshare(CLONE_NEWNS): {}",
                std::io::Error::last_os_error()
            ));
        }
        // Keep our mounts from propagating back to the node.
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Tracefs::Unavailable(format!("making / private: {}", std::io::Error::last_os_error()));
        }
        if libc::mount(
            c"tracefs".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        ) != 0
        {
            return Tracefs::Unavailable(format!("mounting tracefs: {}", std::io::Error::last_os_error()));
        }
    }
    match tracefs_with_events() {
        Some(p) => Tracefs::PrivateMount(p),
        None => Tracefs::Unavailable("tracefs has no events/raw_syscalls directory".into()),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub can_run: bool,
    pub collector_version: &'static str,
    pub kernel: String,
    pub kernel_version: Option<[u32; 3]>,
    pub arch: String,
    pub hostname: String,
    pub btf: bool,
    pub ringbuf: Option<bool>,
    pub root: bool,
    pub cap_bpf: bool,
    pub cap_perfmon: bool,
    pub cap_sys_admin: bool,
    pub tracefs: Tracefs,
    pub tracepoints: BTreeMap<String, bool>,
    pub missing: Vec<String>,
}

pub struct Uname {
    pub release: String,
    pub machine: String,
    pub nodename: String,
}

pub fn uname() -> Uname {
    // SAFETY: uname fills the zeroed struct; its fields are NUL-terminated.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        libc::uname(&mut u);
        let s = |f: &[libc::c_char]| CStr::from_ptr(f.as_ptr()).to_string_lossy().into_owned();
        Uname { release: s(&u.release), machine: s(&u.machine), nodename: s(&u.nodename) }
    }
}

/// "6.18.44-fc-v669" → [6, 18, 44].
pub fn parse_kernel_version(release: &str) -> Option<[u32; 3]> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    let patch = it.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some([major, minor, patch])
}

/// Effective capability bits from the text of /proc/self/status.
pub fn cap_eff(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Where the kernel facts come from. The real check reads uname(2) and
/// /sys/kernel/btf/vmlinux. Debug builds (tests) may override both through
/// `TAPDECK_TEST_KERNEL_RELEASE` and `TAPDECK_TEST_BTF_PATH`, so the "too old" and
/// "no BTF" sentences can be checked end to end on a machine that has neither
/// problem; release builds ignore those variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSource {
    pub release: String,
    pub btf_path: PathBuf,
}

impl KernelSource {
    pub fn real(u: &Uname) -> Self {
        Self { release: u.release.clone(), btf_path: PathBuf::from(BTF_PATH) }
    }

    fn from_env(u: &Uname) -> Self {
        let mut k = Self::real(u);
        if cfg!(debug_assertions) {
            if let Some(r) = std::env::var_os("TAPDECK_TEST_KERNEL_RELEASE") {
                k.release = r.to_string_lossy().into_owned();
            }
            if let Some(p) = std::env::var_os("TAPDECK_TEST_BTF_PATH") {
                k.btf_path = PathBuf::from(p);
            }
        }
        k
    }
}

/// The kernel-version and BTF requirements, each missing one as a sentence that
/// names it and says what to do.
pub fn kernel_requirements(release: &str, btf_path: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    match parse_kernel_version(release) {
        Some([a, b, _]) if (a, b) < MIN_KERNEL => missing.push(format!(
            "kernel {release} is older than {}.{}: the BPF ring buffer and CO-RE tracing need Linux 5.8 or later; \
             capture on a node with a newer kernel",
            MIN_KERNEL.0, MIN_KERNEL.1
        )),
        None => missing.push(format!(
            "kernel version {release:?} could not be parsed: the collector needs Linux 5.8 or later"
        )),
        _ => {}
    }
    if !btf_path.exists() {
        missing.push(format!(
            "kernel BTF is missing ({} does not exist): the kernel was built without CONFIG_DEBUG_INFO_BTF, \
             which CO-RE programs need; use a kernel with BTF (most distributions since 2020 ship it)",
            btf_path.display()
        ));
    }
    missing
}

pub fn check(tracefs: &Tracefs) -> Report {
    let u = uname();
    let kernel = KernelSource::from_env(&u);
    check_with(tracefs, u, &kernel)
}

pub fn check_with(tracefs: &Tracefs, u: Uname, kernel: &KernelSource) -> Report {
    let kv = parse_kernel_version(&kernel.release);
    let btf = kernel.btf_path.exists();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let caps = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| cap_eff(&s)).unwrap_or(0);
    let has = |c: u32| caps & (1u64 << c) != 0;
    let (cap_bpf, cap_perfmon, cap_sys_admin) = (has(CAP_BPF), has(CAP_PERFMON), has(CAP_SYS_ADMIN));
    let privileged = cap_sys_admin || (cap_bpf && cap_perfmon);

    let mut missing = kernel_requirements(&kernel.release, &kernel.btf_path);
    if !privileged {
        missing.push(
            "not running as root (no CAP_BPF+CAP_PERFMON or CAP_SYS_ADMIN): start the collector as root, \
             e.g. with sudo -n"
                .to_string(),
        );
    }
    let ringbuf = if privileged { libbpf_rs::MapType::RingBuf.is_supported().ok() } else { None };
    if ringbuf == Some(false) {
        missing.push(
            "BPF ring buffer maps are not supported by this kernel: Linux 5.8 or later is needed".into(),
        );
    }
    let mut tracepoints = BTreeMap::new();
    match tracefs.path() {
        Some(dir) => {
            for name in RAW_SYSCALL_TRACEPOINTS {
                let present = Path::new(dir).join("events/raw_syscalls").join(name).join("id").exists();
                if !present {
                    missing.push(format!(
                        "tracepoint raw_syscalls/{name} is missing: the kernel needs CONFIG_FTRACE_SYSCALLS"
                    ));
                }
                tracepoints.insert(format!("raw_syscalls/{name}"), present);
            }
        }
        None => {
            if let Tracefs::Unavailable(why) = tracefs {
                missing
                    .push(format!("tracefs is unavailable ({why}): syscall tracepoints cannot be attached"));
            }
        }
    }
    Report {
        can_run: missing.is_empty(),
        collector_version: env!("CARGO_PKG_VERSION"),
        kernel: kernel.release.clone(),
        kernel_version: kv,
        arch: u.machine,
        hostname: u.nodename,
        btf,
        ringbuf,
        root,
        cap_bpf,
        cap_perfmon,
        cap_sys_admin,
        tracefs: tracefs.clone(),
        tracepoints,
        missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v669"), Some([6, 18, 44]));
        assert_eq!(parse_kernel_version("5.4.0-150-generic"), Some([5, 4, 0]));
        assert_eq!(parse_kernel_version("5.8"), Some([5, 8, 0]));
        assert_eq!(parse_kernel_version("x"), None);
        assert!((5, 4) < MIN_KERNEL && (5, 8) >= MIN_KERNEL && (6, 1) > MIN_KERNEL);
    }

    #[test]
    fn old_kernel_is_named() {
        let btf = Path::new("/proc/self/status"); // any file that exists
        let m = kernel_requirements("5.4.0-150-generic", btf);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].contains("kernel 5.4.0-150-generic is older than 5.8"), "{}", m[0]);
        assert!(m[0].contains("newer kernel"), "{}", m[0]);
        assert!(kernel_requirements("5.8.0", btf).is_empty());
        assert!(kernel_requirements("6.18.44-fc-v669", btf).is_empty());
        assert!(kernel_requirements("5.7.19", btf)[0].contains("older than 5.8"));
        assert!(kernel_requirements("4.19.0-27-amd64", btf)[0].contains("older than 5.8"));
        assert!(kernel_requirements("weird", btf)[0].contains("could not be parsed"));
    }

    #[test]
    fn missing_btf_is_named() {
        let m = kernel_requirements("6.1.0", Path::new("/nonexistent/btf/vmlinux"));
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].starts_with("kernel BTF is missing (/nonexistent/btf/vmlinux does not exist)"),
            "{}",
            m[0]
        );
        assert!(m[0].contains("CONFIG_DEBUG_INFO_BTF"), "{}", m[0]);
        // Both at once: both named.
        assert_eq!(kernel_requirements("5.4.0", Path::new("/nonexistent")).len(), 2);
    }

    #[test]
    fn report_carries_the_injected_kernel() {
        let k = KernelSource { release: "5.4.0-old".into(), btf_path: PathBuf::from("/nonexistent") };
        let r = check_with(&Tracefs::Unavailable("test".into()), uname(), &k);
        assert!(!r.can_run);
        assert!(!r.btf);
        assert_eq!(r.kernel, "5.4.0-old");
        assert_eq!(r.kernel_version, Some([5, 4, 0]));
        assert!(r.missing.iter().any(|m| m.contains("older than 5.8")), "{:?}", r.missing);
        assert!(r.missing.iter().any(|m| m.contains("kernel BTF is missing")), "{:?}", r.missing);
    }

    #[test]
    fn real_source_reads_uname_and_sysfs() {
        let u = uname();
        let k = KernelSource::real(&u);
        assert_eq!(k.btf_path, Path::new(BTF_PATH));
        assert_eq!(k.release, u.release);
    }

    #[test]
    fn capabilities() {
        let s = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        let c = cap_eff(s).unwrap();
        assert!(c & (1 << CAP_BPF) != 0 && c & (1 << CAP_SYS_ADMIN) != 0);
        assert_eq!(cap_eff("CapEff:\t0000000000000000\n"), Some(0));
        assert_eq!(cap_eff("nothing"), None);
    }
}
