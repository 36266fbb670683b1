// Shared by the L7 fuzz targets (pulled in with `include!`; kept outside
// fuzz_targets/ so that runners globbing that folder do not take it for a target).

use tapdeck_collector::event::Direction;
use tapdeck_collector::l7::{Message, Session};
use tapdeck_collector::tracker::Meta;

/// Cuts `data` into reads: the first byte of each piece gives its length (low 5
/// bits), its direction (bit 5), and a copy-cap gap (bits 6-7) of bytes the
/// syscall moved but the collector did not copy. Checks what every span shows.
fn drive(s: &mut dyn Session, data: &[u8], max_text: usize) {
    let mut rest = data;
    let mut i = 0u64;
    let mut out = Vec::new();
    while let Some((&ctl, tail)) = rest.split_first() {
        let n = ((ctl & 0x1f) as usize * 7).min(tail.len());
        let (piece, tail) = tail.split_at(n);
        let dir = if ctl & 0x20 != 0 { Direction::Egress } else { Direction::Ingress };
        let gap = [0u64, 1, 300, 70_000][(ctl >> 6) as usize];
        let meta = Meta { enter_ns: i, exit_ns: i + 1, tid: 1, seq: 0, trace_id: i };
        s.feed(dir, piece, piece.len() as u64 + gap, meta, &mut out);
        for m in out.drain(..) {
            match m {
                Message::Request { first, last, req, .. } => {
                    assert!(first.enter_ns <= last.enter_ns);
                    assert!(req.request_resource.len() <= max_text, "resource {}", req.request_resource.len());
                }
                Message::Response { first, last, resp, .. } => {
                    assert!(first.enter_ns <= last.enter_ns);
                    assert!(resp.exception.as_ref().map_or(0, |e| e.len()) <= max_text);
                }
                Message::Error(_) => {}
            }
        }
        rest = tail;
        i += 1;
    }
}
