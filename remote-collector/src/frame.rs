//! The collector stream (STREAM.md): 8-byte header + UTF-8 JSON body.
//!
//! | offset | size | field   |
//! |--------|------|---------|
//! | 0      | 2    | magic `TD` |
//! | 2      | 1    | version `1` |
//! | 3      | 1    | type |
//! | 4      | 4    | body length, little-endian, ≤ 16 MiB |

use std::io::{self, Write};
use std::time::{Duration, Instant};

use serde::Serialize;
use thiserror::Error;

pub const MAGIC: [u8; 2] = *b"TD";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 8;
pub const MAX_BODY: usize = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    Hello = 1,
    Process = 2,
    Span = 3,
    Flow = 4,
    Stats = 5,
    Error = 6,
    Bye = 7,
    /// A network namespace with its interfaces and addresses (packet capture).
    Netns = 8,
}

impl FrameType {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Hello,
            2 => Self::Process,
            3 => Self::Span,
            4 => Self::Flow,
            5 => Self::Stats,
            6 => Self::Error,
            7 => Self::Bye,
            8 => Self::Netns,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Hello => "hello",
            Self::Process => "process",
            Self::Span => "span",
            Self::Flow => "flow",
            Self::Stats => "stats",
            Self::Error => "error",
            Self::Bye => "bye",
            Self::Netns => "netns",
        }
    }
}

#[derive(Debug, Error)]
pub enum FrameError {
    #[error("frame body of {0} bytes exceeds the 16 MiB limit")]
    TooLarge(usize),
    #[error("encoding frame body: {0}")]
    Json(#[from] serde_json::Error),
    #[error("writing frame: {0}")]
    Io(#[from] io::Error),
}

/// Appends one frame (header + `body`) to `out`.
pub fn encode_raw(ty: FrameType, body: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    if body.len() > MAX_BODY {
        return Err(FrameError::TooLarge(body.len()));
    }
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(ty as u8);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    Ok(())
}

/// Encodes `body` as JSON into one frame.
pub fn encode<T: Serialize + ?Sized>(ty: FrameType, body: &T) -> Result<Vec<u8>, FrameError> {
    let json = serde_json::to_vec(body)?;
    let mut out = Vec::with_capacity(HEADER_LEN + json.len());
    encode_raw(ty, &json, &mut out)?;
    Ok(out)
}

/// Buffered frame writer. After the first write error (EPIPE when the SSH channel
/// is gone) it stops writing and reports `broken()`; callers then shut down.
pub struct FrameWriter<W: Write> {
    inner: io::BufWriter<W>,
    scratch: Vec<u8>,
    broken: bool,
    dirty: bool,
    last_flush: Instant,
    frames: u64,
}

impl<W: Write> FrameWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner: io::BufWriter::with_capacity(64 * 1024, inner),
            scratch: Vec::with_capacity(4096),
            broken: false,
            dirty: false,
            last_flush: Instant::now(),
            frames: 0,
        }
    }

    /// Writes one frame. Encoding errors are returned; I/O errors mark the writer
    /// broken and are returned once.
    pub fn write<T: Serialize + ?Sized>(&mut self, ty: FrameType, body: &T) -> Result<(), FrameError> {
        if self.broken {
            return Ok(());
        }
        // Serialise straight after a placeholder header, then fill it in.
        self.scratch.clear();
        self.scratch.extend_from_slice(&[0u8; HEADER_LEN]);
        serde_json::to_writer(&mut self.scratch, body)?;
        let len = self.scratch.len() - HEADER_LEN;
        if len > MAX_BODY {
            return Err(FrameError::TooLarge(len));
        }
        self.scratch[0..2].copy_from_slice(&MAGIC);
        self.scratch[2] = VERSION;
        self.scratch[3] = ty as u8;
        self.scratch[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        if let Err(e) = self.inner.write_all(&self.scratch) {
            self.broken = true;
            return Err(e.into());
        }
        self.dirty = true;
        self.frames += 1;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), FrameError> {
        self.last_flush = Instant::now();
        if self.broken || !self.dirty {
            return Ok(());
        }
        self.dirty = false;
        if let Err(e) = self.inner.flush() {
            self.broken = true;
            return Err(e.into());
        }
        Ok(())
    }

    /// Flushes when something was written and `every` has passed since the last flush.
    pub fn flush_if_due(&mut self, every: Duration) -> Result<(), FrameError> {
        if self.dirty && self.last_flush.elapsed() >= every {
            self.flush()
        } else {
            Ok(())
        }
    }

    pub fn broken(&self) -> bool {
        self.broken
    }

    pub fn frames_written(&self) -> u64 {
        self.frames
    }

    pub fn get_ref(&self) -> &W {
        self.inner.get_ref()
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub version: u8,
    pub type_code: u8,
    pub body: Vec<u8>,
}

impl Frame {
    pub fn frame_type(&self) -> Option<FrameType> {
        FrameType::from_u8(self.type_code)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Malformed {
    #[error("bad magic {0:02x}{1:02x}")]
    BadMagic(u8, u8),
    #[error("unknown frame version {0}")]
    BadVersion(u8),
    #[error("frame length {0} exceeds 16 MiB")]
    TooLong(u32),
}

/// Incremental reader side of the stream: push bytes, pop frames. On a malformed
/// header it reports once and scans forward to the next `TD` magic.
#[derive(Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as a frame.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete frame, a malformed-header report, or `None` when more
    /// bytes are needed.
    pub fn next_frame(&mut self) -> Option<Result<Frame, Malformed>> {
        let b = &self.buf[self.start..];
        if b.len() < HEADER_LEN {
            if !b.is_empty() && b[0] != MAGIC[0] {
                return Some(Err(self.resync()));
            }
            return None;
        }
        if b[0..2] != MAGIC {
            return Some(Err(self.resync()));
        }
        if b[2] != VERSION {
            let v = b[2];
            self.skip_to_next_magic(1);
            return Some(Err(Malformed::BadVersion(v)));
        }
        let len = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        if len as usize > MAX_BODY {
            self.skip_to_next_magic(1);
            return Some(Err(Malformed::TooLong(len)));
        }
        let total = HEADER_LEN + len as usize;
        if b.len() < total {
            return None;
        }
        let frame = Frame { version: b[2], type_code: b[3], body: b[HEADER_LEN..total].to_vec() };
        self.start += total;
        Some(Ok(frame))
    }

    fn resync(&mut self) -> Malformed {
        let b = &self.buf[self.start..];
        let err = Malformed::BadMagic(b[0], b.get(1).copied().unwrap_or(0));
        self.skip_to_next_magic(1);
        err
    }

    fn skip_to_next_magic(&mut self, from: usize) {
        let b = &self.buf[self.start..];
        let skip = b.windows(2).skip(from).position(|w| w == MAGIC).map(|p| p + from).unwrap_or_else(|| {
            // Keep a trailing 'T' that may be the first half of a magic.
            if b.last() == Some(&MAGIC[0]) {
                b.len() - 1
            } else {
                b.len()
            }
        });
        self.start += skip.max(1).min(b.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn header_bytes_magic_version_type_length() {
        let f = encode(FrameType::Span, &json!({"a": 1})).unwrap();
        assert_eq!(&f[0..2], b"TD");
        assert_eq!(f[2], 1, "version");
        assert_eq!(f[3], 3, "span type");
        let len = u32::from_le_bytes(f[4..8].try_into().unwrap()) as usize;
        assert_eq!(len, br#"{"a":1}"#.len());
        assert_eq!(&f[8..], br#"{"a":1}"#);
    }

    #[test]
    fn type_codes_match_stream_md() {
        let codes: Vec<u8> = [
            FrameType::Hello,
            FrameType::Process,
            FrameType::Span,
            FrameType::Flow,
            FrameType::Stats,
            FrameType::Error,
            FrameType::Bye,
            FrameType::Netns,
        ]
        .iter()
        .map(|t| *t as u8)
        .collect();
        assert_eq!(codes, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(FrameType::from_u8(7), Some(FrameType::Bye));
        assert_eq!(FrameType::from_u8(8), Some(FrameType::Netns));
        assert_eq!(FrameType::from_u8(9), None);
    }

    #[test]
    fn length_is_little_endian() {
        let body = vec![b' '; 0x0001_0203];
        let mut out = Vec::new();
        encode_raw(FrameType::Stats, &body, &mut out).unwrap();
        assert_eq!(&out[4..8], &[0x03, 0x02, 0x01, 0x00]);
    }

    #[test]
    fn oversized_body_is_refused() {
        let body = vec![0u8; MAX_BODY + 1];
        let mut out = Vec::new();
        assert!(matches!(encode_raw(FrameType::Span, &body, &mut out), Err(FrameError::TooLarge(_))));
        assert!(out.is_empty());
    }

    #[test]
    fn decoder_roundtrip_byte_by_byte() {
        let mut stream = encode(FrameType::Hello, &json!({"protocol_version": 1})).unwrap();
        stream.extend(encode(FrameType::Bye, &json!({"reason": "duration"})).unwrap());
        let mut d = FrameDecoder::new();
        let mut got = Vec::new();
        for b in &stream {
            d.push(std::slice::from_ref(b));
            while let Some(f) = d.next_frame() {
                got.push(f.unwrap());
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].frame_type(), Some(FrameType::Hello));
        assert_eq!(got[1].body, br#"{"reason":"duration"}"#);
    }

    #[test]
    fn decoder_resyncs_after_garbage() {
        let mut stream = b"xxTgarbage".to_vec();
        stream.extend(encode(FrameType::Span, &json!({})).unwrap());
        let mut d = FrameDecoder::new();
        d.push(&stream);
        let mut frames = 0;
        let mut errors = 0;
        while let Some(f) = d.next_frame() {
            match f {
                Ok(_) => frames += 1,
                Err(_) => errors += 1,
            }
        }
        assert_eq!(frames, 1);
        assert!(errors >= 1);
    }

    #[test]
    fn writer_output_equals_encode() {
        let mut w = FrameWriter::new(Vec::new());
        w.write(FrameType::Process, &json!({"pid": 1, "cmdline": "nginx: worker"})).unwrap();
        w.flush().unwrap();
        let expected = encode(FrameType::Process, &json!({"pid": 1, "cmdline": "nginx: worker"})).unwrap();
        assert_eq!(w.get_ref(), &expected);
        assert_eq!(w.frames_written(), 1);
    }

    #[test]
    fn writer_marks_broken_on_io_error() {
        struct Failing;
        impl Write for Failing {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::BrokenPipe))
            }
            fn flush(&mut self) -> io::Result<()> {
                Err(io::Error::from(io::ErrorKind::BrokenPipe))
            }
        }
        let mut w = FrameWriter::new(Failing);
        w.write(FrameType::Stats, &json!({})).unwrap(); // buffered
        assert!(w.flush().is_err());
        assert!(w.broken());
        assert!(w.write(FrameType::Stats, &json!({})).is_ok(), "no-op once broken");
    }
}
