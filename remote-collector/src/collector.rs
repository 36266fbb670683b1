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
use std::os::fd::FromRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, RingBufferBuilder};
use serde::Serialize;

use crate::bpf::TapdeckSkelBuilder;
use crate::budget::{self, Controller, SAMPLE_ALL};
use crate::cli::{RunOptions, Signals, MAX_DURATION};
use crate::event::{self, Event};
use crate::frame::{FrameType, FrameWriter};
use crate::probe::{self, Report, Tracefs};
use crate::procs::{self, Filter, ProcessInfo};
use crate::span::Span;
use crate::stats::{own_usage, BudgetStats, Counters, StatsFrame, Usage};
use crate::syscall_trace::SyscallTraceIds;
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
    let caps: BTreeMap<&'static str, bool> = [
        ("ebpf_syscalls", report.can_run),
        ("http1", true),
        ("ringbuf", report.ringbuf.unwrap_or(false)),
        ("btf", report.btf),
        ("sendfile_bytes", true),
        ("fork_follow", true),
        ("flows", false),
        ("packets", false),
        ("otel", false),
        ("tls", false),
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

/// The signals this build captures (`--signals` default).
pub const BUILT_SIGNALS: Signals = Signals { syscalls: true, packets: false, otel: false };

/// The sentence for a `--signals` request this build cannot serve.
fn unbuilt_signals(wanted: Signals) -> Option<String> {
    let mut missing = Vec::new();
    if wanted.packets && !BUILT_SIGNALS.packets {
        missing.push("n (packet N spans and L4 flows)");
    }
    if wanted.otel && !BUILT_SIGNALS.otel {
        missing.push("a (OTLP receiver A spans)");
    }
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "--signals {}: this collector build does not capture {}; use --signals {}",
        wanted.list(),
        missing.join(" or "),
        BUILT_SIGNALS.list()
    ))
}

pub fn limits_of(opts: &RunOptions) -> budget::Limits {
    budget::Limits { max_cpu_pct: opts.max_cpu_pct, max_rss_bytes: opts.max_rss_mb << 20 }
}

/// Runs a capture. Returns the process exit code.
pub fn run(opts: RunOptions) -> i32 {
    let out = stdout_writer();
    let filter = Filter { names: opts.names.clone(), pids: opts.pids.clone() };
    // Before any thread exists (ensure_tracefs may unshare the mount namespace).
    let tracefs = probe::ensure_tracefs();
    let report = probe::check(&tracefs);
    let limits = limits_of(&opts);
    let signals = opts.signals.unwrap_or(BUILT_SIGNALS);
    let cfg = RunConfig {
        filter: &filter,
        duration: opts.duration,
        max_payload: opts.max_payload,
        signals: &(Signals { packets: false, otel: false, ..signals }).list(),
        limits,
    };
    write_hello(&out, &report, &cfg);
    if let Some(message) = unbuilt_signals(signals) {
        write_error(&out, "usage", message, Vec::new());
        return EXIT_USAGE;
    }
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
    match capture(&opts, &filter, &out) {
        Ok(code) => code,
        Err(e) => {
            write_error(&out, "runtime", format!("{e:#}"), Vec::new());
            EXIT_RUNTIME
        }
    }
}

struct Capture<'a> {
    out: &'a Out,
    filter: &'a Filter,
    counters: Arc<Counters>,
    tx: SyncSender<Msg>,
    traced: BTreeMap<u32, ProcessInfo>,
    warned_missing: bool,
}

impl Capture<'_> {
    /// Brings the BPF `pids` map in line with /proc.
    fn rescan(&mut self, pids_map: &dyn MapCore) {
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
        }
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

fn write_stats(
    out: &Out,
    counters: &Counters,
    start: Instant,
    is_final: bool,
    usage: Usage,
    ctl: &Controller,
) {
    let frame =
        StatsFrame::collect(counters, usage, start.elapsed().as_millis() as u64, is_final, budget_stats(ctl));
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

fn capture(opts: &RunOptions, filter: &Filter, out: &Out) -> Result<i32> {
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

    let mut links: Vec<Link> = Vec::new();
    for prog in skel.object().progs_mut() {
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

    let counters = Arc::new(Counters::default());
    let queued = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::sync_channel::<Msg>(QUEUE_EVENTS);

    let tracker = Tracker::new(
        clock,
        counters.clone(),
        SyscallTraceIds::new(random_prefix()),
        procs::lookup,
        Limits::default(),
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
    };
    cap.rescan(&skel.maps.pids);
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
            cap.rescan(&skel.maps.pids);
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
            write_stats(out, &counters, start, false, usage, &ctl);
        }
        let mut w = lock(out);
        let _ = w.flush_if_due(FLUSH_EVERY);
        if w.broken() {
            break Stop::StdoutClosed;
        }
    };

    // Teardown, identical on every path: detach, drain, flush the tracker.
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
    let _ = tx.send(Msg::Shutdown { now_ns: Clock::now_mono_ns() });
    drop(cap);
    drop(tx);
    drop(rb);
    if worker_handle.join().is_err() && runtime_error.is_none() {
        runtime_error = Some(anyhow::anyhow!("the span worker panicked"));
    }
    drop(skel);

    if let Some(e) = &runtime_error {
        write_error(out, "runtime", format!("{e:#}"), Vec::new());
    }
    write_stats(out, &counters, start, true, own_usage(), &ctl);
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
