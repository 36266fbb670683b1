//! tapdeck-collector entry point: argument handling and exit codes.

use std::process::ExitCode;

use tapdeck_collector::budget;
use tapdeck_collector::cli::{self, Command};
use tapdeck_collector::collector::{self, EXIT_MISSING, EXIT_OK, EXIT_USAGE};
use tapdeck_collector::probe;
use tapdeck_collector::procs::Filter;

fn main() -> ExitCode {
    let code = match cli::parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Help) => {
            print!("{}", cli::USAGE);
            EXIT_OK
        }
        Ok(Command::Version) => {
            println!("tapdeck-collector {}", env!("CARGO_PKG_VERSION"));
            EXIT_OK
        }
        Ok(Command::Probe) => {
            let tracefs = probe::ensure_tracefs();
            let report = probe::check(&tracefs);
            match serde_json::to_string_pretty(&report) {
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("tapdeck-collector: encoding the probe report: {e}"),
            }
            if report.can_run {
                EXIT_OK
            } else {
                EXIT_MISSING
            }
        }
        Ok(Command::Run(opts)) => collector::run(opts),
        Err(e) => {
            // The app reads stdout: hello, then an error frame saying what was wrong.
            let out = collector::stdout_writer();
            let report = probe::check(&probe::Tracefs::Unavailable("not checked: invalid arguments".into()));
            let cfg = collector::RunConfig {
                filter: &Filter::default(),
                duration: cli::DEFAULT_DURATION,
                max_payload: cli::DEFAULT_MAX_PAYLOAD,
                signals: &cli::Signals::ALL.list(),
                limits: budget::Limits {
                    max_cpu_pct: budget::DEFAULT_MAX_CPU_PCT,
                    max_rss_bytes: budget::DEFAULT_MAX_RSS_MB << 20,
                },
                otlp: &serde_json::Value::Null,
            };
            collector::write_hello(&out, &report, &cfg);
            collector::write_error(&out, "usage", e.to_string(), Vec::new());
            EXIT_USAGE
        }
    };
    ExitCode::from(code as u8)
}
