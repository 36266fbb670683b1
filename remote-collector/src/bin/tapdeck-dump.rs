//! tapdeck-dump: reads a collector stream (STREAM.md) from stdin or a file and
//! prints one JSON line per frame: `{"type":"span","body":{...}}`. Malformed
//! headers print `{"type":"malformed",...}` and the reader resynchronises on the
//! next magic, as STREAM.md asks of every reader. `--summary` adds a count of
//! frames per type on stderr at the end.
//!
//!     ssh node sudo -n ./tapdeck-collector --duration 30s | tapdeck-dump --summary

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::process::ExitCode;

use serde_json::{json, Value};
use tapdeck_collector::frame::FrameDecoder;

fn main() -> ExitCode {
    let mut summary = false;
    let mut path = None;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--summary" => summary = true,
            "-h" | "--help" => {
                println!("Usage: tapdeck-dump [--summary] [FILE]   (reads stdin without FILE)");
                return ExitCode::SUCCESS;
            }
            _ if path.is_none() && !a.starts_with('-') => path = Some(a),
            _ => {
                eprintln!("tapdeck-dump: unexpected argument {a:?} (see --help)");
                return ExitCode::from(64);
            }
        }
    }
    let mut input: Box<dyn Read> = match &path {
        Some(p) => match File::open(p) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("tapdeck-dump: opening {p}: {e}");
                return ExitCode::from(1);
            }
        },
        None => Box::new(io::stdin().lock()),
    };
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut dec = FrameDecoder::new();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("tapdeck-dump: reading: {e}");
                break;
            }
        };
        dec.push(&buf[..n]);
        while let Some(f) = dec.next_frame() {
            let line = match f {
                Ok(frame) => {
                    let name = frame.frame_type().map(|t| t.name().to_string());
                    let body: Value = serde_json::from_slice(&frame.body)
                        .unwrap_or_else(|e| json!({"undecodable_body": e.to_string()}));
                    *counts
                        .entry(name.clone().unwrap_or_else(|| format!("unknown_{}", frame.type_code)))
                        .or_default() += 1;
                    match name {
                        Some(n) => json!({"type": n, "body": body}),
                        None => json!({"type": "unknown", "code": frame.type_code, "body": body}),
                    }
                }
                Err(e) => {
                    *counts.entry("malformed".into()).or_default() += 1;
                    json!({"type": "malformed", "error": e.to_string()})
                }
            };
            if writeln!(out, "{line}").is_err() {
                return ExitCode::SUCCESS; // reader went away
            }
        }
        let _ = out.flush();
    }
    if dec.pending() > 0 {
        *counts.entry("truncated_tail_bytes".into()).or_default() += dec.pending() as u64;
    }
    let _ = out.flush();
    if summary {
        eprintln!("tapdeck-dump: {}", serde_json::to_string(&counts).unwrap_or_default());
    }
    ExitCode::SUCCESS
}
