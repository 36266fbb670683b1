//! Command line.

use std::time::Duration;

use thiserror::Error;

use crate::budget::{DEFAULT_MAX_CPU_PCT, DEFAULT_MAX_RSS_MB};

/// Longest capture allowed, whatever `--duration` says.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
pub const DEFAULT_DURATION: Duration = Duration::from_secs(300);
pub const DEFAULT_NAMES: [&str; 2] = ["nginx", "openresty"];
pub const DEFAULT_MAX_PAYLOAD: u32 = 4096;
/// Must match TD_MAX_PAYLOAD in src/bpf/tapdeck.h.
pub const MAX_PAYLOAD_LIMIT: u32 = 8192;
/// Bounds of `--max-header` (one HTTP/1.x header block, possibly over many syscalls).
pub const MAX_HEADER_MIN: usize = 1024;
pub const MAX_HEADER_MAX: usize = 1024 * 1024;

pub const USAGE: &str = "\
Usage: tapdeck-collector [OPTIONS]
       tapdeck-collector --probe
       tapdeck-collector --version

Traces the chosen processes' TCP socket syscalls with eBPF, rebuilds HTTP/1.x
exchanges and writes framed spans to stdout (see STREAM.md). Logs go to stderr.
Runs until stdin closes, --duration elapses, or SIGTERM/SIGINT/SIGHUP.

Options:
  --process NAME|PID    trace processes whose comm is NAME, or PID and all its
                        descendants; repeatable (default: nginx, openresty)
  --duration D          stop after D: 30, 30s, 5m, 1h (default 5m, at most 1h)
  --max-payload BYTES   payload bytes copied per syscall, 1..=8192 (default 4096)
  --max-header BYTES    longest HTTP/1.x header block parsed, over as many
                        syscalls as it takes, 1024..=1048576 (default 16384)
  --redact-header NAME  never ship this header's value (repeatable; Authorization,
                        Cookie, Set-Cookie, Proxy-Authorization always are)
  --capture-header NAME copy this header's value into span attributes
                        (repeatable; redacted headers show as [REDACTED])
  --signals LIST        comma list of what to collect: s (syscall S spans), n
                        (packet N spans and L4 flows), a (OTLP receiver A spans);
                        default s,a (packet capture is opt-in: it costs
                        more and adds an N span per interface crossed)
  --otlp-listen ADDR    OTLP/HTTP receiver address for A spans, IP:PORT, or off
                        (default 127.0.0.1:4318; paths /v1/traces and
                        /api/v1/otel/trace; protobuf or JSON, gzip)
  --interfaces LIST     packet capture only on these interface names (comma
                        list; default: every interface of every namespace)
  --max-cpu PCT         own CPU budget in percent of one core (default 10);
                        over it, sockets are sampled and the rest counted as
                        dropped
  --max-rss MB          own memory budget in resident MB (default 50); over
                        it, the same
  --ignore-stdin        do not stop when stdin reaches EOF (manual runs)
  --probe               print a JSON report of kernel support and exit
                        (0: can run, 2: a requirement is missing)
  --version             print the version
  -h, --help            print this help
";

/// What `--signals` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signals {
    /// `s`: syscall S spans.
    pub syscalls: bool,
    /// `n`: packet N spans and L4 flows.
    pub packets: bool,
    /// `a`: OTLP receiver A spans.
    pub otel: bool,
}

/// Without `--signals`: S and A spans. Packet capture (`n`) is opt-in, as in the app.
impl Default for Signals {
    fn default() -> Self {
        Self { syscalls: true, packets: false, otel: true }
    }
}

impl Signals {
    pub const ALL: Signals = Signals { syscalls: true, packets: true, otel: true };

    /// "s,n,a" order, as given to --signals.
    pub fn list(self) -> String {
        [(self.syscalls, "s"), (self.packets, "n"), (self.otel, "a")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunOptions {
    pub names: Vec<String>,
    pub pids: Vec<u32>,
    pub duration: Duration,
    pub max_payload: u32,
    pub ignore_stdin: bool,
    pub max_header: usize,
    pub redact_headers: Vec<String>,
    pub capture_headers: Vec<String>,
    pub signals: Signals,
    /// The OTLP receiver's address; None when `--otlp-listen off`.
    pub otlp_listen: Option<String>,
    pub interfaces: Vec<String>,
    /// Percent of one core.
    pub max_cpu_pct: f64,
    pub max_rss_mb: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Run(RunOptions),
    Probe,
    Version,
    Help,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CliError {
    #[error("invalid duration {0:?}: use seconds (30), or a number with s, m or h (30s, 5m, 1h)")]
    BadDuration(String),
    #[error("duration {0:?} is longer than the 1h maximum: capture in several runs")]
    DurationTooLong(String),
    #[error("duration must be more than zero")]
    ZeroDuration,
    #[error("invalid --max-payload {0:?}: give a byte count from 1 to {MAX_PAYLOAD_LIMIT}")]
    BadPayload(String),
    #[error("invalid --max-header {0:?}: give a byte count from {MAX_HEADER_MIN} to {MAX_HEADER_MAX}")]
    BadMaxHeader(String),
    #[error(
        "invalid header name {0:?}: give a name such as X-Api-Key (letters, digits and !#$%&'*+-.^_`|~)"
    )]
    BadHeaderName(String),
    #[error("invalid --max-cpu {0:?}: give a percentage of one core above 0, up to 1000 (e.g. 10 or 2.5)")]
    BadMaxCpu(String),
    #[error("invalid --max-rss {0:?}: give a resident-memory budget in MB from 1 to 65536")]
    BadMaxRss(String),
    #[error("invalid --process {0:?}: give a process name or a PID")]
    BadProcess(String),
    #[error("invalid --signals {0:?}: give a comma list of s (syscalls), n (packets), a (OTLP), e.g. s,a")]
    BadSignals(String),
    #[error("invalid --otlp-listen {0:?}: give IP:PORT (e.g. 127.0.0.1:4318 or 0.0.0.0:4318) or off")]
    BadListen(String),
    #[error("invalid --interfaces {0:?}: give a comma list of interface names, e.g. eth0,lo")]
    BadInterfaces(String),
    #[error("{0} (see --help)")]
    Usage(String),
}

/// Parses `30`, `30s`, `500ms`, `5m`, `1h` and enforces MAX_DURATION.
pub fn parse_duration(s: &str) -> Result<Duration, CliError> {
    let t = s.trim();
    let bad = || CliError::BadDuration(s.to_string());
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = match unit {
        "" | "s" => n.checked_mul(1000),
        "ms" => Some(n),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(bad()),
    }
    .ok_or_else(|| CliError::DurationTooLong(s.to_string()))?;
    let d = Duration::from_millis(ms);
    if d.is_zero() {
        return Err(CliError::ZeroDuration);
    }
    if d > MAX_DURATION {
        return Err(CliError::DurationTooLong(s.to_string()));
    }
    Ok(d)
}

/// Parses `--signals s,n,a` (any order, at least one).
pub fn parse_signals(v: &str) -> Result<Signals, CliError> {
    let bad = || CliError::BadSignals(v.to_string());
    let mut sig = Signals { syscalls: false, packets: false, otel: false };
    for part in v.split(',').map(str::trim) {
        match part {
            "s" => sig.syscalls = true,
            "n" => sig.packets = true,
            "a" => sig.otel = true,
            _ => return Err(bad()),
        }
    }
    Ok(sig)
}

/// Parses `--otlp-listen IP:PORT|off`.
pub fn parse_listen(v: &str) -> Result<Option<String>, CliError> {
    let t = v.trim();
    if t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    match t.parse::<std::net::SocketAddr>() {
        Ok(_) => Ok(Some(t.to_string())),
        Err(_) => Err(CliError::BadListen(v.to_string())),
    }
}

fn parse_payload(s: &str) -> Result<u32, CliError> {
    match s.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_PAYLOAD_LIMIT).contains(&n) => Ok(n),
        _ => Err(CliError::BadPayload(s.to_string())),
    }
}

fn parse_max_header(s: &str) -> Result<usize, CliError> {
    match s.trim().parse::<usize>() {
        Ok(n) if (MAX_HEADER_MIN..=MAX_HEADER_MAX).contains(&n) => Ok(n),
        _ => Err(CliError::BadMaxHeader(s.to_string())),
    }
}

/// An HTTP field name (RFC 9110 token), at most 128 bytes.
fn parse_header_name(s: &str) -> Result<String, CliError> {
    let t = s.trim();
    let ok = !t.is_empty()
        && t.len() <= 128
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(t.to_ascii_lowercase())
    } else {
        Err(CliError::BadHeaderName(s.to_string()))
    }
}

fn parse_max_cpu(s: &str) -> Result<f64, CliError> {
    match s.trim().trim_end_matches('%').parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1000.0 => Ok(v),
        _ => Err(CliError::BadMaxCpu(s.to_string())),
    }
}

fn parse_max_rss(s: &str) -> Result<u64, CliError> {
    match s.trim().parse::<u64>() {
        Ok(v) if (1..=65536).contains(&v) => Ok(v),
        _ => Err(CliError::BadMaxRss(s.to_string())),
    }
}

pub fn parse_args<I>(args: I) -> Result<Command, CliError>
where
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString>,
{
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_iter(
        std::iter::once(std::ffi::OsString::from("tapdeck-collector"))
            .chain(args.into_iter().map(Into::into)),
    );
    let mut names = Vec::new();
    let mut pids = Vec::new();
    let mut duration = DEFAULT_DURATION;
    let mut max_payload = DEFAULT_MAX_PAYLOAD;
    let mut ignore_stdin = false;
    let mut max_header = crate::http::DEFAULT_MAX_HEADER;
    let mut redact_headers = Vec::new();
    let mut capture_headers = Vec::new();
    let mut signals = Signals::default();
    let mut otlp_listen = Some(crate::otlp::DEFAULT_LISTEN.to_string());
    let mut interfaces = Vec::new();
    let mut max_cpu_pct = DEFAULT_MAX_CPU_PCT;
    let mut max_rss_mb = DEFAULT_MAX_RSS_MB;
    let mut mode = None;
    let usage = |e: lexopt::Error| CliError::Usage(e.to_string());
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Long("process") | Short('p') => {
                let v = p.value().map_err(usage)?.string().map_err(usage)?;
                let v = v.trim().to_string();
                if v.is_empty() || v.contains('/') {
                    return Err(CliError::BadProcess(v));
                }
                if v.bytes().all(|b| b.is_ascii_digit()) {
                    pids.push(v.parse::<u32>().map_err(|_| CliError::BadProcess(v.clone()))?);
                } else {
                    names.push(v);
                }
            }
            Long("duration") | Short('d') => {
                let v = p.value().map_err(usage)?.string().map_err(usage)?;
                duration = parse_duration(&v)?;
            }
            Long("max-payload") => {
                let v = p.value().map_err(usage)?.string().map_err(usage)?;
                max_payload = parse_payload(&v)?;
            }
            Long("max-header") => {
                let v = p.value().map_err(usage)?.string().map_err(usage)?;
                max_header = parse_max_header(&v)?;
            }
            Long("redact-header") => {
                let v = p.value().map_err(usage)?.string().map_err(usage)?;
                redact_headers.push(parse_header_name(&v)?);
            }
            Long("capture-header") => {
                let v = p.value().map_err(usage)?.string().map_err(usage)?;
                capture_headers.push(parse_header_name(&v)?);
            }
            Long("signals") => {
                let v = p.value().map_err(usage)?.string().map_err(usage)?;
                signals = parse_signals(&v)?;
            }
            Long("otlp-listen") => {
                let v = p.value().map_err(usage)?.string().map_err(usage)?;
                otlp_listen = parse_listen(&v)?;
            }
            Long("interfaces") => {
                let v = p.value().map_err(usage)?.string().map_err(usage)?;
                for name in v.split(',').map(str::trim) {
                    if name.is_empty() || name.len() > 15 || name.contains('/') {
                        return Err(CliError::BadInterfaces(v.clone()));
                    }
                    interfaces.push(name.to_string());
                }
            }
            Long("max-cpu") => {
                let v = p.value().map_err(usage)?.string().map_err(usage)?;
                max_cpu_pct = parse_max_cpu(&v)?;
            }
            Long("max-rss") => {
                let v = p.value().map_err(usage)?.string().map_err(usage)?;
                max_rss_mb = parse_max_rss(&v)?;
            }
            Long("ignore-stdin") => ignore_stdin = true,
            Long("probe") => mode = Some(Command::Probe),
            Long("version") | Short('V') => mode = Some(Command::Version),
            Long("help") | Short('h') => return Ok(Command::Help),
            _ => return Err(CliError::Usage(arg.unexpected().to_string())),
        }
    }
    if let Some(m) = mode {
        return Ok(m);
    }
    if names.is_empty() && pids.is_empty() {
        names = DEFAULT_NAMES.iter().map(|s| s.to_string()).collect();
    }
    Ok(Command::Run(RunOptions {
        names,
        pids,
        duration,
        max_payload,
        ignore_stdin,
        max_header,
        redact_headers,
        capture_headers,
        signals,
        otlp_listen,
        interfaces,
        max_cpu_pct,
        max_rss_mb,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(" 15s "), Ok(Duration::from_secs(15)));
    }

    #[test]
    fn bad_durations() {
        assert!(matches!(parse_duration("61m"), Err(CliError::DurationTooLong(_))));
        assert!(matches!(parse_duration("2h"), Err(CliError::DurationTooLong(_))));
        assert!(matches!(parse_duration("99999999999999999999h"), Err(CliError::BadDuration(_))));
        assert!(matches!(parse_duration("18446744073709551615h"), Err(CliError::DurationTooLong(_))));
        assert_eq!(parse_duration("0"), Err(CliError::ZeroDuration));
        for s in ["", "s", "5x", "-5", "1.5m", "5 m", "m5"] {
            assert!(matches!(parse_duration(s), Err(CliError::BadDuration(_))), "{s:?}");
        }
    }

    #[test]
    fn defaults() {
        let Command::Run(o) = parse_args(Vec::<String>::new()).unwrap() else { panic!() };
        assert_eq!(o.names, vec!["nginx", "openresty"]);
        assert!(o.pids.is_empty());
        assert_eq!(o.duration, DEFAULT_DURATION);
        assert_eq!(o.max_payload, 4096);
        assert!(!o.ignore_stdin);
        assert_eq!(o.max_header, 16 * 1024);
        assert!(o.redact_headers.is_empty() && o.capture_headers.is_empty());
        assert_eq!(o.signals, Signals { syscalls: true, packets: false, otel: true });
        assert_eq!(o.otlp_listen.as_deref(), Some("127.0.0.1:4318"));
        assert_eq!(o.max_cpu_pct, 10.0);
        assert_eq!(o.max_rss_mb, 50);
    }

    #[test]
    fn header_flags() {
        let Command::Run(o) = parse_args([
            "--max-header",
            "65536",
            "--redact-header",
            "X-Api-Key",
            "--redact-header",
            "x-session",
            "--capture-header",
            "User-Agent",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(o.max_header, 65536);
        assert_eq!(o.redact_headers, vec!["x-api-key", "x-session"]);
        assert_eq!(o.capture_headers, vec!["user-agent"]);
        for bad in ["1023", "2000000", "16k", ""] {
            assert!(matches!(parse_args(["--max-header", bad]), Err(CliError::BadMaxHeader(_))), "{bad}");
        }
        for bad in ["", "X Api", "x:y", "é"] {
            assert!(
                matches!(parse_args(["--redact-header", bad]), Err(CliError::BadHeaderName(_))),
                "{bad:?}"
            );
            assert!(
                matches!(parse_args(["--capture-header", bad]), Err(CliError::BadHeaderName(_))),
                "{bad:?}"
            );
        }
        let e = parse_args(["--redact-header", "X Api"]).unwrap_err().to_string();
        assert!(e.contains("give a name such as X-Api-Key"), "{e}");
    }

    #[test]
    fn signals_and_otlp_listen() {
        let Command::Run(o) = parse_args(["--signals", "s,a", "--otlp-listen", "198.18.0.1:4318"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(o.signals, Signals { syscalls: true, packets: false, otel: true });
        assert_eq!(o.otlp_listen.as_deref(), Some("198.18.0.1:4318"));
        let Command::Run(o) = parse_args(["--signals", "a", "--otlp-listen", "off"]).unwrap() else {
            panic!()
        };
        assert_eq!(o.signals, Signals { syscalls: false, packets: false, otel: true });
        assert_eq!(o.otlp_listen, None);
        for bad in ["", "x", "s,,a", "s;a", "S"] {
            assert!(matches!(parse_args(["--signals", bad]), Err(CliError::BadSignals(_))), "{bad:?}");
        }
        for bad in ["4318", "localhost:4318", "1.2.3.4", "1.2.3.4:99999", ""] {
            assert!(matches!(parse_args(["--otlp-listen", bad]), Err(CliError::BadListen(_))), "{bad:?}");
        }
        assert_eq!(parse_listen("[::1]:4318"), Ok(Some("[::1]:4318".into())));
    }

    #[test]
    fn signals_and_budget() {
        let Command::Run(o) =
            parse_args(["--signals", "s,n", "--max-cpu", "2.5", "--max-rss", "80"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(o.signals, Signals { syscalls: true, packets: true, otel: false });
        assert_eq!(o.signals.list(), "s,n");
        assert_eq!(o.max_cpu_pct, 2.5);
        assert_eq!(o.max_rss_mb, 80);
        assert_eq!(parse_signals("a,s"), Ok(Signals { syscalls: true, packets: false, otel: true }));
        assert_eq!(Signals::ALL.list(), "s,n,a");
        for bad in ["", "x", "s,,n", "S", "s n"] {
            assert!(matches!(parse_args(["--signals", bad]), Err(CliError::BadSignals(_))), "{bad:?}");
        }
        for bad in ["0", "-1", "abc", "1001", "NaN"] {
            assert!(matches!(parse_args(["--max-cpu", bad]), Err(CliError::BadMaxCpu(_))), "{bad:?}");
        }
        assert!(matches!(parse_args(["--max-cpu", "5%"]), Ok(Command::Run(_))));
        for bad in ["0", "1.5", "x", "70000"] {
            assert!(matches!(parse_args(["--max-rss", bad]), Err(CliError::BadMaxRss(_))), "{bad:?}");
        }
        let e = parse_args(["--max-rss", "0"]).unwrap_err().to_string();
        assert!(e.contains("MB from 1 to 65536"), "{e}");
    }

    #[test]
    fn processes_names_and_pids() {
        let Command::Run(o) = parse_args([
            "--process",
            "1234",
            "--process",
            "kong",
            "--duration",
            "15s",
            "--max-payload",
            "512",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(o.pids, vec![1234]);
        assert_eq!(o.names, vec!["kong"]);
        assert_eq!(o.duration, Duration::from_secs(15));
        assert_eq!(o.max_payload, 512);
    }

    #[test]
    fn modes_and_errors() {
        assert_eq!(parse_args(["--probe"]), Ok(Command::Probe));
        assert_eq!(parse_args(["--version"]), Ok(Command::Version));
        assert_eq!(parse_args(["--help"]), Ok(Command::Help));
        assert!(matches!(parse_args(["--max-payload", "9000"]), Err(CliError::BadPayload(_))));
        assert!(matches!(parse_args(["--max-payload", "0"]), Err(CliError::BadPayload(_))));
        assert!(matches!(parse_args(["--bogus"]), Err(CliError::Usage(_))));
        assert!(matches!(parse_args(["--duration"]), Err(CliError::Usage(_))));
        assert!(matches!(parse_args(["--process", ""]), Err(CliError::BadProcess(_))));
    }

    #[test]
    fn signals_and_interfaces() {
        let Command::Run(o) = parse_args(["--signals", "s,n", "--interfaces", "eth0, lo"]).unwrap() else {
            panic!()
        };
        assert_eq!(o.signals, Signals { syscalls: true, packets: true, otel: false });
        assert_eq!(o.interfaces, vec!["eth0", "lo"]);
        let Command::Run(o) = parse_args(Vec::<String>::new()).unwrap() else { panic!() };
        assert_eq!(o.signals, Signals::default());
        assert!(o.interfaces.is_empty());
        assert!(matches!(parse_args(["--signals", "s,x"]), Err(CliError::BadSignals(_))));
        assert!(matches!(parse_args(["--signals", ""]), Err(CliError::BadSignals(_))));
        assert!(matches!(parse_args(["--interfaces", "eth0,,lo"]), Err(CliError::BadInterfaces(_))));
    }
}
