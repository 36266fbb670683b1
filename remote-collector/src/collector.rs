//! The capture run: load and attach the BPF programs, poll the ring buffer,
//! keep the traced-process set current, write frames, and tear everything down
//! on every exit path.
//!
//! Threads: the main thread polls the ring buffer (its callback only decodes
//! and `try_send`s), rescans /proc and writes process/stats frames; the worker
//! thread owns the Tracker and writes span frames; a third thread waits for
//! EOF on stdin. Frames share one buffered writer behind a mutex.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, FromRawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, RingBufferBuilder};
use serde::Serialize;

use crate::bpf::TapdeckSkelBuilder;
use crate::bpf_tls::{TlsProgs, TlsSkel, TlsSkelBuilder};
use crate::budget::{self, Controller, SAMPLE_ALL};
use crate::cli::{RunOptions, MAX_DURATION};
use crate::event::{self, Event};
use crate::frame::{FrameType, FrameWriter};
use crate::kflows::KernelFlows;
use crate::otlp::{self, Receiver};
use crate::packet::capture::{PacketCapture, PacketCounters, PacketOptions};
use crate::probe::{self, Report, Tracefs};
use crate::procs::{self, Filter, ProcessInfo};
use crate::span::Span;
use crate::stats::{own_usage, BudgetStats, Counters, StatsFrame, Usage};
use crate::syscall_trace::SyscallTraceIds;
use crate::tls::TlsProbes;
use crate::tracker::{Clock, Limits, Tracker};

pub const EXIT_OK: i32 = 0;
pub const EXIT_RUNTIME: i32 = 1;
pub const EXIT_MISSING: i32 = 2;
pub const EXIT_USAGE: i32 = 64;

/// Events queued between the poll loop and the worker, by count and by bytes.
const QUEUE_EVENTS: usize = 32_768;
const QUEUE_BYTES: usize = 16 << 20;
const EVENT_OVERHEAD: usize = 160;
const POLL_TIMEOUT: Duration = Duration::from_millis(20);
const FLUSH_EVERY: Duration = Duration::from_millis(100);
const TICK: Duration = Duration::from_secs(1);

/// BPF counter indexes (enum td_counter in tapdeck.h).
const CNT_RINGBUF_FULL: u32 = 0;
const CNT_PAYLOAD_FAULT: u32 = 1;
const CNT_PID_INHERITED: u32 = 2;
const CNT_ACTIVE_FULL: u32 = 3;
const CNT_SAMPLED_OUT: u32 = 4;

type Out = Arc<Mutex<FrameWriter<File>>>;

fn lock(w: &Out) -> MutexGuard<'_, FrameWriter<File>> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

/// Our own handle on fd 1, so frames bypass std's line-buffered Stdout.
pub fn stdout_writer() -> Out {
    // SAFETY: dup returns a new descriptor we own (or -1, checked).
    let fd = unsafe { libc::dup(libc::STDOUT_FILENO) };
    let file = if fd >= 0 {
        // SAFETY: fd is a fresh descriptor owned by nobody else.
        unsafe { File::from_raw_fd(fd) }
    } else {
        // SAFETY: fall back to fd 1 itself; it stays open for the process lifetime.
        unsafe { File::from_raw_fd(libc::STDOUT_FILENO) }
    };
    Arc::new(Mutex::new(FrameWriter::new(file)))
}

enum Msg {
    Event(Box<Event>),
    Process(ProcessInfo),
    Exited {
        pid: u32,
        now_ns: u64,
    },
    /// The sampling level went down: forget connections no longer sampled.
    Shed {
        keep: u32,
    },
    Shutdown {
        now_ns: u64,
    },
}

#[derive(Serialize)]
struct Hello<'a> {
    protocol_version: u8,
    collector_version: &'static str,
    hostname: &'a str,
    kernel: &'a str,
    arch: &'a str,
    pid: u32,
    boot_time_us: u64,
    capabilities: BTreeMap<&'static str, bool>,
    filter: &'a Filter,
    max_duration_s: u64,
    // Additions (STREAM.md): how the run is configured.
    max_payload: u32,
    tracefs: &'a Tracefs,
    /// Header values that never leave the node, and those copied into attributes.
    redacted_headers: Vec<String>,
    captured_headers: &'a [String],
    /// The OTLP receiver: `{listen, paths}`, `{listen, error}` when it could not
    /// bind, or null when it is off.
    otlp: &'a serde_json::Value,
    /// `--signals` in effect, e.g. "s".
    signals: &'a str,
    budget: HelloBudget,
}

#[derive(Serialize)]
struct HelloBudget {
    max_cpu_pct: f64,
    max_rss_bytes: u64,
}

/// How a run is configured, as announced in `hello`.
pub struct RunConfig<'a> {
    pub filter: &'a Filter,
    pub duration: Duration,
    pub max_payload: u32,
    pub signals: &'a str,
    pub limits: budget::Limits,
    /// The OTLP receiver's hello entry (see `Hello::otlp`).
    pub otlp: &'a serde_json::Value,
}

#[derive(Serialize)]
struct ErrorFrame<'a> {
    code: &'a str,
    message: String,
    missing: Vec<String>,
}

#[derive(Serialize)]
struct Bye<'a> {
    reason: &'a str,
    detached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<&'a str>,
}

fn boot_time_us() -> u64 {
    let read = |clk| {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes into the timespec we own.
        unsafe { libc::clock_gettime(clk, &mut ts) };
        ts.tv_sec as i128 * 1_000_000 + ts.tv_nsec as i128 / 1000
    };
    (read(libc::CLOCK_REALTIME) - read(libc::CLOCK_BOOTTIME)).max(0) as u64
}

/// Writes `hello`. Every run that writes frames starts with it.
pub fn write_hello(out: &Out, report: &Report, cfg: &RunConfig<'_>) {
    let otel = cfg.otlp.get("paths").is_some();
    let caps: BTreeMap<&'static str, bool> = [
        ("ebpf_syscalls", report.can_run),
        ("http1", true),
        ("http2", true),
        ("grpc", true),
        ("dns", true),
        ("redis", true),
        ("postgresql", true),
        ("ringbuf", report.ringbuf.unwrap_or(false)),
        ("btf", report.btf),
        ("sendfile_bytes", true),
        ("fork_follow", true),
        ("flows", true),
        ("packets", true),
        ("otel", otel),
        ("tls", true),
    ]
    .into_iter()
    .collect();
    let hello = Hello {
        protocol_version: crate::frame::VERSION,
        collector_version: env!("CARGO_PKG_VERSION"),
        hostname: &report.hostname,
        kernel: &report.kernel,
        arch: &report.arch,
        pid: std::process::id(),
        boot_time_us: boot_time_us(),
        capabilities: caps,
        filter: cfg.filter,
        max_duration_s: cfg.duration.as_secs().min(MAX_DURATION.as_secs()),
        max_payload: cfg.max_payload,
        tracefs: &report.tracefs,
        redacted_headers: crate::redact::global().redacted_names(),
        captured_headers: crate::redact::global().captured_names(),
        otlp: cfg.otlp,
        signals: cfg.signals,
        budget: HelloBudget { max_cpu_pct: cfg.limits.max_cpu_pct, max_rss_bytes: cfg.limits.max_rss_bytes },
    };
    let mut w = lock(out);
    if let Err(e) = w.write(FrameType::Hello, &hello) {
        eprintln!("tapdeck-collector: writing hello: {e}");
    }
}

pub fn write_error(out: &Out, code: &str, message: String, missing: Vec<String>) {
    eprintln!("tapdeck-collector: error: {message}");
    let mut w = lock(out);
    let _ = w.write(FrameType::Error, &ErrorFrame { code, message, missing });
    let _ = w.flush();
}

/// Why the capture stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    StdinClosed,
    Duration,
    Signal(i32),
    StdoutClosed,
    Error,
}

impl Stop {
    fn reason(self) -> &'static str {
        match self {
            Stop::StdinClosed => "stdin_closed",
            Stop::Duration => "duration",
            Stop::Signal(_) => "signal",
            Stop::StdoutClosed => "stdout_closed",
            Stop::Error => "error",
        }
    }

    fn signal_name(self) -> Option<&'static str> {
        match self {
            Stop::Signal(libc::SIGTERM) => Some("SIGTERM"),
            Stop::Signal(libc::SIGINT) => Some("SIGINT"),
            Stop::Signal(libc::SIGHUP) => Some("SIGHUP"),
            Stop::Signal(_) => Some("other"),
            _ => None,
        }
    }
}

fn libbpf_log(level: libbpf_rs::PrintLevel, msg: String) {
    if level != libbpf_rs::PrintLevel::Debug {
        eprint!("libbpf: {msg}");
    }
}

fn raise_memlock() {
    let r = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit reads the struct we own. Kernels before 5.11 charge BPF
    // maps to RLIMIT_MEMLOCK; later ones ignore it.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &r) };
}

pub fn limits_of(opts: &RunOptions) -> budget::Limits {
    budget::Limits { max_cpu_pct: opts.max_cpu_pct, max_rss_bytes: opts.max_rss_mb << 20 }
}

/// Runs a capture. Returns the process exit code.
pub fn run(opts: RunOptions) -> i32 {
    let out = stdout_writer();
    let filter = Filter { names: opts.names.clone(), pids: opts.pids.clone() };
    crate::redact::install(crate::redact::HeaderPolicy::new(&opts.redact_headers, &opts.capture_headers));
    // Before any thread exists (ensure_tracefs may unshare the mount namespace).
    let tracefs = probe::ensure_tracefs();
    let report = probe::check(&tracefs);
    let counters = Arc::new(Counters::default());
    let otlp =
        if report.missing.is_empty() { OtlpRun::start(&opts, &out, &counters) } else { OtlpRun::off() };
    let limits = limits_of(&opts);
    let signals_list = opts.signals.list();
    let cfg = RunConfig {
        filter: &filter,
        duration: opts.duration,
        max_payload: opts.max_payload,
        signals: &signals_list,
        limits,
        otlp: &otlp.hello,
    };
    write_hello(&out, &report, &cfg);
    if !report.missing.is_empty() {
        let message = format!("{} (run --probe for the full report)", report.missing.join("; "));
        write_error(&out, "missing_requirement", message, report.missing.clone());
        return EXIT_MISSING;
    }
    if let Tracefs::PrivateMount(p) = &tracefs {
        eprintln!(
            "tapdeck-collector: tracefs was not mounted; mounted it at {p} in a private mount namespace"
        );
    }
    match capture(&opts, &filter, &out, counters, &otlp) {
        Ok(code) => code,
        Err(e) => {
            write_error(&out, "runtime", format!("{e:#}"), Vec::new());
            EXIT_RUNTIME
        }
    }
}

/// The OTLP receiver of a run, when `a` is in `--signals` and `--otlp-listen`
/// is not `off`. Its spans are written straight to the frame writer from the
/// receiver's own threads; `closed` (set under the writer lock) guarantees that
/// none follows the final `stats` and `bye`.
struct OtlpRun {
    receiver: Option<Receiver>,
    listen: String,
    closed: Arc<AtomicBool>,
    hello: serde_json::Value,
}

impl OtlpRun {
    fn off() -> Self {
        Self {
            receiver: None,
            listen: String::new(),
            closed: Arc::new(AtomicBool::new(true)),
            hello: serde_json::Value::Null,
        }
    }

    fn start(opts: &RunOptions, out: &Out, counters: &Arc<Counters>) -> Self {
        let Some(listen) = opts.otlp_listen.clone().filter(|_| opts.signals.otel) else {
            return Self::off();
        };
        let closed = Arc::new(AtomicBool::new(false));
        let sink: otlp::server::Sink = {
            let (out, closed, counters) = (out.clone(), closed.clone(), counters.clone());
            Arc::new(move |spans: Vec<otlp::map::AppSpan>| {
                let mut w = lock(&out);
                if closed.load(Relaxed) || w.broken() {
                    return false;
                }
                for s in &spans {
                    if let Err(e) = w.write(FrameType::Span, s) {
                        if !w.broken() {
                            eprintln!("tapdeck-collector: encoding an OTLP span: {e}");
                        }
                    }
                }
                counters.spans_sent.fetch_add(spans.len() as u64, Relaxed);
                true
            })
        };
        match Receiver::start(&listen, otlp::server::Config::default(), sink) {
            Ok(r) => {
                let addr = r.local_addr.to_string();
                eprintln!(
                    "tapdeck-collector: OTLP/HTTP receiver on http://{addr}{} and {} (protobuf, JSON, gzip)",
                    otlp::PATHS[0],
                    otlp::PATHS[1]
                );
                let hello = serde_json::json!({ "listen": addr, "paths": otlp::PATHS });
                Self { receiver: Some(r), listen: addr, closed, hello }
            }
            Err(e) => {
                let error = format!(
                    "cannot listen on {listen} for OTLP ({e}): A spans are off for this capture; choose another address with --otlp-listen, or stop what holds it"
                );
                eprintln!("tapdeck-collector: {error}");
                let hello = serde_json::json!({ "listen": listen, "error": error });
                Self { receiver: None, listen, closed, hello }
            }
        }
    }

    /// No span frame is written after this returns.
    fn close(&self, out: &Out) {
        let _w = lock(out);
        self.closed.store(true, Relaxed);
        if let Some(r) = &self.receiver {
            r.close();
        }
    }

    fn stats(&self) -> Option<otlp::OtlpStats> {
        self.receiver.as_ref().map(|r| r.counters.snapshot(&self.listen))
    }
}

struct Capture<'a> {
    out: &'a Out,
    filter: &'a Filter,
    counters: Arc<Counters>,
    tx: SyncSender<Msg>,
    traced: BTreeMap<u32, ProcessInfo>,
    warned_missing: bool,
    tls: TlsProbes,
}

impl Capture<'_> {
    /// Brings the BPF `pids` map in line with /proc.
    fn rescan(&mut self, pids_map: &dyn MapCore, tls_progs: Option<&TlsProgs<'_>>) {
        let root = Path::new("/proc");
        let all = procs::list(root);
        let want = procs::select(&all, self.filter, std::process::id());
        let in_map: BTreeSet<u32> = pids_map
            .keys()
            .filter_map(|k| k.get(..4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]])))
            .collect();
        let now_ns = Clock::now_mono_ns();
        let gone: Vec<u32> = self
            .traced
            .keys()
            .copied()
            .chain(in_map.iter().copied())
            .filter(|p| !want.contains(p))
            .collect::<BTreeSet<u32>>()
            .into_iter()
            .collect();
        for pid in gone {
            let _ = pids_map.delete(&pid.to_ne_bytes());
            if self.traced.remove(&pid).is_some() {
                let _ = self.tx.send(Msg::Exited { pid, now_ns });
            }
        }
        let new: Vec<&procs::ProcEntry> =
            all.iter().filter(|e| want.contains(&e.pid) && !self.traced.contains_key(&e.pid)).collect();
        for entry in new {
            let info = procs::info(root, entry);
            {
                let mut w = lock(self.out);
                let _ = w.write(FrameType::Process, &info);
            }
            eprintln!(
                "tapdeck-collector: tracing pid {} ({}): {}",
                info.pid, info.process_name, info.cmdline
            );
            let _ = self.tx.send(Msg::Process(info.clone()));
            if !in_map.contains(&entry.pid)
                && pids_map.update(&entry.pid.to_ne_bytes(), &[1u8], MapFlags::ANY).is_err()
            {
                Counters::inc(&self.counters.pid_table_full);
                continue;
            }
            self.traced.insert(entry.pid, info);
            if let Some(progs) = tls_progs {
                self.tls.scan(root, entry.pid, progs);
            }
        }
        // Inherited (forked) pids are traced by the kernel before their process
        // frame; their libssl is the parent's, already probed.
        self.counters.tls_libraries.store(self.tls.libraries().count() as u64, Relaxed);
        self.counters.processes.store(self.traced.len() as u64, Relaxed);
        if self.traced.is_empty() && !self.warned_missing {
            self.warned_missing = true;
            eprintln!(
                "tapdeck-collector: no process matches names {:?} / pids {:?} yet; rescanning every second",
                self.filter.names, self.filter.pids
            );
        }
    }
}

fn read_kernel_counters(map: &dyn MapCore, counters: &Counters) {
    let read = |idx: u32| -> u64 {
        match map.lookup_percpu(&idx.to_ne_bytes(), MapFlags::ANY) {
            Ok(Some(per_cpu)) => per_cpu
                .iter()
                .filter_map(|v| v.get(..8).map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes"))))
                .sum(),
            _ => 0,
        }
    };
    counters.ringbuf_full.store(read(CNT_RINGBUF_FULL), Relaxed);
    counters.payload_read_failed.store(read(CNT_PAYLOAD_FAULT), Relaxed);
    counters.pid_inherited.store(read(CNT_PID_INHERITED), Relaxed);
    counters.inflight_table_full.store(read(CNT_ACTIVE_FULL), Relaxed);
    counters.sampled_out.store(read(CNT_SAMPLED_OUT), Relaxed);
}

fn budget_stats(ctl: &Controller) -> BudgetStats {
    let l = ctl.limits();
    BudgetStats {
        max_cpu_pct: l.max_cpu_pct,
        max_rss_bytes: l.max_rss_bytes,
        cpu_pct: (ctl.last_cpu_pct() * 10.0).round() / 10.0,
        sample_rate: ctl.keep() as f64 / SAMPLE_ALL as f64,
        over: ctl.over().map(|o| o.name()),
    }
}

#[allow(clippy::too_many_arguments)]
fn write_stats(
    out: &Out,
    counters: &Counters,
    packets: Option<&PacketCounters>,
    start: Instant,
    is_final: bool,
    otlp: &OtlpRun,
    usage: Usage,
    ctl: &Controller,
) {
    let mut frame =
        StatsFrame::collect(counters, usage, start.elapsed().as_millis() as u64, is_final, budget_stats(ctl));
    if let Some(o) = otlp.stats() {
        // Exports refused (bad body, too large, busy, …): their spans are lost.
        frame.drops.insert("otlp_rejected_exports", o.rejected.values().sum());
        frame.otlp = Some(o);
    }
    let mut frame = serde_json::to_value(frame).unwrap_or_default();
    if let (Some(p), Some(obj)) = (packets, frame.as_object_mut()) {
        // Packet capture (STREAM.md): its own counters and its drop reasons.
        if let Some(drops) = obj.get_mut("drops").and_then(|d| d.as_object_mut()) {
            for (k, v) in p.drops() {
                drops.insert(k.to_string(), v.into());
            }
        }
        obj.insert("packets".into(), serde_json::to_value(p.stats()).unwrap_or_default());
    }
    let mut w = lock(out);
    let _ = w.write(FrameType::Stats, &frame);
    if is_final {
        let _ = w.flush();
    }
}

/// One stderr line when shedding starts, reaches nothing, or ends (the stats frames
/// carry every tick's level).
fn log_budget_change(ctl: &Controller, before: u32, after: u32, usage: Usage) {
    let pct = |k: u32| k as f64 * 100.0 / SAMPLE_ALL as f64;
    let l = ctl.limits();
    let why = match ctl.over() {
        Some(budget::Over::Rss) => format!(
            "resident memory {} MB is over the --max-rss {} MB budget",
            usage.rss_bytes >> 20,
            l.max_rss_bytes >> 20
        ),
        Some(budget::Over::Cpu) => format!(
            "own CPU {:.1}% of a core is over the --max-cpu {}% budget",
            ctl.last_cpu_pct(),
            l.max_cpu_pct
        ),
        None => "back under budget".to_string(),
    };
    if before == SAMPLE_ALL || after == SAMPLE_ALL || after == 0 {
        eprintln!(
            "tapdeck-collector: {why}: tracing {:.1}% of sockets (was {:.1}%); skipped work is counted in stats.drops",
            pct(after),
            pct(before)
        );
    }
}

fn spawn_stdin_watch(flag: Arc<AtomicBool>) {
    thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 512];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            flag.store(true, Relaxed);
        })
        .expect("spawning the stdin watcher");
}

fn worker(rx: mpsc::Receiver<Msg>, out: Out, mut tracker: Tracker, queued: Arc<AtomicUsize>) {
    let mut spans: Vec<Span> = Vec::new();
    let mut last_sweep = Instant::now();
    let write = |spans: &mut Vec<Span>| {
        if spans.is_empty() {
            return;
        }
        let mut w = lock(&out);
        for s in spans.drain(..) {
            if let Err(e) = w.write(FrameType::Span, &s) {
                if !w.broken() {
                    eprintln!("tapdeck-collector: encoding span: {e}");
                }
            }
        }
    };
    let handle = |msg: Msg, tracker: &mut Tracker, spans: &mut Vec<Span>| -> bool {
        match msg {
            Msg::Event(ev) => {
                queued.fetch_sub(ev.payload.len() + EVENT_OVERHEAD, Relaxed);
                tracker.on_event(&ev, spans);
            }
            Msg::Process(info) => tracker.set_process(info.pid, info.meta()),
            Msg::Exited { pid, now_ns } => tracker.process_exited(pid, now_ns, spans),
            Msg::Shed { keep } => {
                tracker.shed(keep);
            }
            Msg::Shutdown { now_ns } => {
                tracker.finish(now_ns, spans);
                return false;
            }
        }
        true
    };
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(msg) => {
                let mut go_on = handle(msg, &mut tracker, &mut spans);
                // Drain what is already queued before taking the writer lock.
                while go_on && spans.len() < 256 {
                    match rx.try_recv() {
                        Ok(m) => go_on = handle(m, &mut tracker, &mut spans),
                        Err(_) => break,
                    }
                }
                write(&mut spans);
                if !go_on {
                    return;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                tracker.finish(Clock::now_mono_ns(), &mut spans);
                write(&mut spans);
                return;
            }
        }
        if last_sweep.elapsed() >= Duration::from_secs(10) {
            last_sweep = Instant::now();
            tracker.sweep(Clock::now_mono_ns());
        }
    }
}

/// Drops every link. On recent kernels each tracepoint detach waits for an RCU
/// tasks-trace grace period (~35 ms each on the test VM, partly serialised in
/// the kernel); dropping them from parallel threads overlaps the perf-event
/// teardown and roughly halves the total (1.6 s → 0.85 s for 24 links there).
/// Returns true when every link was dropped.
fn detach_all(links: Vec<Link>) -> bool {
    let handles: Vec<_> = links
        .into_iter()
        .map(|link| thread::Builder::new().name("detach".into()).spawn(move || drop(link)))
        .collect();
    let mut all = true;
    // A failed spawn dropped (detached) its link with the closure.
    for h in handles.into_iter().flatten() {
        all &= h.join().is_ok();
    }
    all
}

fn random_prefix() -> u32 {
    let mut b = [0u8; 4];
    if File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).is_err() {
        return std::process::id();
    }
    u32::from_ne_bytes(b)
}

/// Opens and loads the TLS object with the syscall object's `pids`, `events` and
/// `counters` maps.
/// With `multi`, the programs are loaded for uprobe_multi links (see tls.rs).
fn load_tls<'obj>(
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
    skel: &crate::bpf::TapdeckSkel<'_>,
    max_payload: u32,
    multi: bool,
) -> Result<TlsSkel<'obj>> {
    let mut open = TlsSkelBuilder::default().open(object).context("opening the TLS BPF object")?;
    if multi {
        for mut prog in open.open_object_mut().progs_mut() {
            prog.set_attach_type(libbpf_rs::ProgramAttachType::TraceUprobeMulti);
        }
    }
    open.maps.rodata_data.as_deref_mut().context("the TLS BPF object has no .rodata section")?.max_payload =
        max_payload;
    open.maps.pids.reuse_fd(skel.maps.pids.as_fd()).context("sharing the pids map with the TLS object")?;
    open.maps
        .events
        .reuse_fd(skel.maps.events.as_fd())
        .context("sharing the ring buffer with the TLS object")?;
    open.maps
        .counters
        .reuse_fd(skel.maps.counters.as_fd())
        .context("sharing the counters with the TLS object")?;
    open.load().context("loading the TLS uprobe programs into the kernel (verifier output above)")
}

fn capture(
    opts: &RunOptions,
    filter: &Filter,
    out: &Out,
    counters: Arc<Counters>,
    otlp: &OtlpRun,
) -> Result<i32> {
    let start = Instant::now();
    let deadline = start + opts.duration.min(MAX_DURATION);
    let clock = Clock::measure();

    let signal = Arc::new(AtomicUsize::new(0));
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        signal_hook::flag::register_usize(sig, signal.clone(), sig as usize)
            .with_context(|| format!("installing the handler for signal {sig}"))?;
    }
    let stdin_closed = Arc::new(AtomicBool::new(false));
    if !opts.ignore_stdin {
        spawn_stdin_watch(stdin_closed.clone());
    }

    libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Warn, libbpf_log)));
    raise_memlock();

    let mut open_object = MaybeUninit::uninit();
    let mut open = TapdeckSkelBuilder::default().open(&mut open_object).context("opening the BPF object")?;
    open.maps.rodata_data.as_deref_mut().context("the BPF object has no .rodata section")?.max_payload =
        opts.max_payload;
    let mut skel = open.load().context("loading the BPF programs into the kernel (verifier output above)")?;

    // The OpenSSL uprobes: a second object sharing the pid filter, the ring
    // buffer and the counters, attached per libssl file as processes show up. A
    // node where it cannot load (no uprobe support) still gets plain-socket spans.
    // uprobe_multi links first where the kernel has them (much faster to detach),
    // classic perf-event uprobes otherwise.
    let mut tls_object = MaybeUninit::uninit();
    let mut tls_object_classic = MaybeUninit::uninit();
    let mut tls_multi = crate::tls::uprobe_multi_wanted();
    let tls_skel = match load_tls(&mut tls_object, &skel, opts.max_payload, tls_multi) {
        Ok(t) => Some(t),
        Err(e) if tls_multi => {
            eprintln!(
                "tapdeck-collector: TLS: uprobe_multi programs did not load ({e:#}); using classic uprobes"
            );
            tls_multi = false;
            load_tls(&mut tls_object_classic, &skel, opts.max_payload, false)
                .map_err(|e| eprintln!("tapdeck-collector: TLS plaintext is off: {e:#}"))
                .ok()
        }
        Err(e) => {
            eprintln!("tapdeck-collector: TLS plaintext is off: {e:#}");
            None
        }
    };

    let mut links: Vec<Link> = Vec::new();
    // Without `s` in --signals nothing is attached: the loop below then only
    // keeps time, writes stats and waits for the end.
    for prog in skel.object().progs_mut().filter(|_| opts.signals.syscalls) {
        let name = prog.name().to_string_lossy().into_owned();
        let link = prog.attach().with_context(|| format!("attaching {name}"))?;
        links.push(link);
    }
    eprintln!("tapdeck-collector: attached {} BPF programs", links.len());
    // libbpf parsed the kernel's BTF (several MB) during load and freed it; hand
    // that memory back so RSS reflects what the capture actually uses.
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };

    // The BPF program's sampling level (.data is mmapped: a store here is seen by
    // the next syscall on any CPU).
    let sample_keep_bpf: &mut u32 =
        &mut skel.maps.data_data.as_deref_mut().context("the BPF object has no .data section")?.sample_keep;
    let mut ctl = Controller::new(limits_of(opts));
    let keep = Arc::new(AtomicU32::new(SAMPLE_ALL));

    let queued = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::sync_channel::<Msg>(QUEUE_EVENTS);

    let tracker = Tracker::new(
        clock,
        counters.clone(),
        SyscallTraceIds::new(random_prefix()),
        procs::lookup,
        Limits { max_header: opts.max_header, ..Limits::default() },
    );
    let worker_handle = {
        let out = out.clone();
        let queued = queued.clone();
        thread::Builder::new()
            .name("span-worker".into())
            .spawn(move || worker(rx, out, tracker, queued))
            .context("spawning the span worker")?
    };

    let rb = {
        let tx = tx.clone();
        let counters = counters.clone();
        let queued = queued.clone();
        let keep = keep.clone();
        let mut decode_warnings = 0u32;
        let mut builder = RingBufferBuilder::new();
        builder
            .add(&skel.maps.events, move |data: &[u8]| {
                Counters::inc(&counters.events_seen);
                match event::decode(data) {
                    Ok(ev) => {
                        // Recorded before the sampling level went down.
                        if !budget::sampled(ev.sock, keep.load(Relaxed)) {
                            Counters::inc(&counters.shed_events);
                            return 0;
                        }
                        let size = ev.payload.len() + EVENT_OVERHEAD;
                        if queued.load(Relaxed) + size > QUEUE_BYTES {
                            Counters::inc(&counters.queue_full);
                            return 0;
                        }
                        queued.fetch_add(size, Relaxed);
                        match tx.try_send(Msg::Event(Box::new(ev))) {
                            Ok(()) => {}
                            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                                queued.fetch_sub(size, Relaxed);
                                Counters::inc(&counters.queue_full);
                            }
                        }
                    }
                    Err(e) => {
                        Counters::inc(&counters.decode_error);
                        if decode_warnings < 5 {
                            decode_warnings += 1;
                            eprintln!("tapdeck-collector: undecodable ring-buffer record: {e}");
                        }
                    }
                }
                0
            })
            .context("registering the ring buffer")?;
        builder.build().context("creating the ring-buffer poller")?
    };

    let mut cap = Capture {
        out,
        filter,
        counters: counters.clone(),
        tx: tx.clone(),
        traced: BTreeMap::new(),
        warned_missing: false,
        tls: TlsProbes::new(tls_multi),
    };
    if opts.signals.syscalls {
        cap.rescan(&skel.maps.pids, tls_skel.as_ref().map(|t| &t.progs));
    }
    let packet_stop = Arc::new(AtomicBool::new(false));
    let packets = if opts.signals.packets {
        let popts = PacketOptions { interfaces: opts.interfaces.clone(), max_payload: opts.max_payload };
        let pc = PacketCapture::start(popts, out.clone(), packet_stop.clone(), random_prefix())?;
        eprintln!(
            "tapdeck-collector: capturing packets in {} network namespaces",
            pc.counters.namespaces.load(Relaxed)
        );
        Some(pc)
    } else {
        None
    };
    let packet_counters = packets.as_ref().map(|p| p.counters.clone());
    let kernel_flows = match &packet_counters {
        Some(c) => Some(KernelFlows::start(out.clone(), packet_stop.clone(), c.clone(), random_prefix())?),
        None => None,
    };
    {
        let mut w = lock(out);
        let _ = w.flush();
    }

    let mut next_tick = start + TICK;
    let mut last_usage = own_usage();
    let mut last_usage_at = Instant::now();
    let mut runtime_error: Option<anyhow::Error> = None;
    let stop = loop {
        if let Err(e) = rb.poll(POLL_TIMEOUT) {
            if e.kind() != libbpf_rs::ErrorKind::Interrupted {
                runtime_error = Some(anyhow::Error::new(e).context("polling the ring buffer"));
                break Stop::Error;
            }
        }
        // Records submitted without a wakeup (see submit() in the BPF code).
        let _ = rb.consume();

        let sig = signal.load(Relaxed);
        if sig != 0 {
            break Stop::Signal(sig as i32);
        }
        if stdin_closed.load(Relaxed) {
            break Stop::StdinClosed;
        }
        if packets.as_ref().is_some_and(|p| p.is_finished())
            || kernel_flows.as_ref().is_some_and(|k| k.is_finished())
        {
            runtime_error =
                Some(anyhow::anyhow!("the packet capture or kernel flow thread stopped unexpectedly"));
            break Stop::Error;
        }
        if worker_handle.is_finished() {
            runtime_error = Some(anyhow::anyhow!("the span worker stopped unexpectedly"));
            break Stop::Error;
        }
        let now = Instant::now();
        if now >= deadline {
            break Stop::Duration;
        }
        if now >= next_tick {
            next_tick += TICK;
            if next_tick < now {
                next_tick = now + TICK;
            }
            if opts.signals.syscalls {
                cap.rescan(&skel.maps.pids, tls_skel.as_ref().map(|t| &t.progs));
            }
            read_kernel_counters(&skel.maps.counters, &counters);
            let usage = own_usage();
            let wall_us = now.duration_since(last_usage_at).as_micros().max(1) as f64;
            let cpu_us = (usage.cpu_user_us + usage.cpu_sys_us)
                .saturating_sub(last_usage.cpu_user_us + last_usage.cpu_sys_us)
                as f64;
            let before = ctl.keep();
            let after = ctl.update(cpu_us * 100.0 / wall_us, usage.rss_bytes);
            if after != before {
                // SAFETY: a plain store into the mmapped .data map; the BPF side only reads it.
                unsafe { std::ptr::write_volatile(sample_keep_bpf as *mut u32, after) };
                keep.store(after, Relaxed);
                if after < before {
                    let _ = tx.send(Msg::Shed { keep: after });
                }
                if ctl.over() == Some(budget::Over::Rss) {
                    // SAFETY: malloc_trim has no preconditions.
                    unsafe { libc::malloc_trim(0) };
                }
                log_budget_change(&ctl, before, after, usage);
            }
            last_usage = usage;
            last_usage_at = now;
            write_stats(out, &counters, packet_counters.as_deref(), start, false, otlp, usage, &ctl);
        }
        // Never wait here for a writer (the OTLP receiver writes whole exports
        // under this lock): when it is busy, flush on a later turn.
        let mut w = match out.try_lock() {
            Ok(w) => w,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => continue,
        };
        let _ = w.flush_if_due(FLUSH_EVERY);
        if w.broken() {
            break Stop::StdoutClosed;
        }
    };

    // Teardown, identical on every path: detach, drain, flush the tracker.
    let mut links = links;
    links.extend(cap.tls.take_links());
    let attached = links.len();
    let t0 = Instant::now();
    let detached = detach_all(links);
    eprintln!(
        "tapdeck-collector: stopping ({}); detached {attached} BPF programs in {} ms",
        stop.signal_name().unwrap_or(stop.reason()),
        t0.elapsed().as_millis()
    );
    let _ = rb.consume();
    read_kernel_counters(&skel.maps.counters, &counters);
    packet_stop.store(true, Relaxed);
    if let Some(p) = packets {
        if !p.join() && runtime_error.is_none() {
            runtime_error = Some(anyhow::anyhow!("the packet capture thread panicked"));
        }
    }
    if let Some(k) = kernel_flows {
        if !k.join() && runtime_error.is_none() {
            runtime_error = Some(anyhow::anyhow!("the kernel flow thread panicked"));
        }
    }
    let _ = tx.send(Msg::Shutdown { now_ns: Clock::now_mono_ns() });
    drop(cap);
    drop(tx);
    drop(rb);
    if worker_handle.join().is_err() && runtime_error.is_none() {
        runtime_error = Some(anyhow::anyhow!("the span worker panicked"));
    }
    drop(tls_skel);
    drop(skel);

    otlp.close(out);
    if let Some(e) = &runtime_error {
        write_error(out, "runtime", format!("{e:#}"), Vec::new());
    }
    write_stats(out, &counters, packet_counters.as_deref(), start, true, otlp, own_usage(), &ctl);
    {
        let mut w = lock(out);
        let reason = if runtime_error.is_some() { Stop::Error } else { stop };
        let _ =
            w.write(FrameType::Bye, &Bye { reason: reason.reason(), detached, signal: stop.signal_name() });
        let _ = w.flush();
    }
    if stop == Stop::StdoutClosed {
        eprintln!("tapdeck-collector: stdout closed (EPIPE); exiting");
    }
    Ok(if runtime_error.is_some() { EXIT_RUNTIME } else { EXIT_OK })
}
