//! Thread-based syscall trace ids (DeepFlow's scheme, computed in userspace).
//!
//! Per thread, over the traced socket syscalls in the order they happened:
//! - an ingress syscall on a thread whose previous traced syscall was egress, or
//!   that has none, starts a new id; an ingress after an ingress keeps the id;
//! - an egress syscall reuses the thread's current id (a thread whose first traced
//!   syscall is egress gets a new id, so every syscall has one).
//!
//! A server thread that reads a request and then writes to an upstream therefore
//! gives the upstream request the id of the incoming request: that is the link
//! the trace assembler follows. Ids are below 2^53 (exact in JSON doubles) and
//! unique within a capture; a random 20-bit prefix makes collisions between
//! captures of one database unlikely.

use std::collections::HashMap;

use crate::event::Direction;

/// Ids stay below this so JSON readers keep them exact.
pub const ID_LIMIT: u64 = 1 << 53;
const MAX_THREADS: usize = 1 << 16;

#[derive(Debug, Clone, Copy)]
struct ThreadState {
    id: u64,
    last: Direction,
}

#[derive(Debug)]
pub struct SyscallTraceIds {
    next: u64,
    threads: HashMap<u32, ThreadState>,
}

impl SyscallTraceIds {
    /// `prefix` (taken modulo 2^20) becomes bits 32..52 of every id.
    pub fn new(prefix: u32) -> Self {
        Self { next: ((prefix as u64) & 0xF_FFFF) << 32 | 1, threads: HashMap::new() }
    }

    fn fresh(&mut self) -> u64 {
        let id = self.next;
        self.next += 1;
        if self.next >= ID_LIMIT {
            self.next = 1;
        }
        id
    }

    /// The id of one syscall of thread `tid` moving data in `dir`.
    pub fn assign(&mut self, tid: u32, dir: Direction) -> u64 {
        let prev = self.threads.get(&tid).copied();
        let id = match (prev, dir) {
            (Some(p), Direction::Ingress) if p.last == Direction::Ingress => p.id,
            (Some(p), Direction::Egress) => p.id,
            _ => self.fresh(),
        };
        if prev.is_none() && self.threads.len() >= MAX_THREADS {
            self.threads.clear();
        }
        self.threads.insert(tid, ThreadState { id, last: dir });
        id
    }

    /// Forget a thread (its process exited).
    pub fn forget(&mut self, tid: u32) {
        self.threads.remove(&tid);
    }

    pub fn threads(&self) -> usize {
        self.threads.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::{Egress, Ingress};

    #[test]
    fn ingress_after_nothing_starts_an_id() {
        let mut t = SyscallTraceIds::new(0);
        let a = t.assign(1, Ingress);
        let b = t.assign(2, Ingress);
        assert_ne!(a, b, "threads have their own ids");
    }

    #[test]
    fn egress_reuses_and_next_ingress_starts_new() {
        let mut t = SyscallTraceIds::new(0);
        // Proxy worker: read client request, write upstream, read upstream reply,
        // write client reply.
        let req_in = t.assign(7, Ingress);
        let req_out = t.assign(7, Egress);
        let resp_in = t.assign(7, Ingress);
        let resp_out = t.assign(7, Egress);
        assert_eq!(req_in, req_out, "s-p request and c-p request share an id");
        assert_ne!(req_in, resp_in, "ingress after egress starts a new id");
        assert_eq!(resp_in, resp_out, "c-p response and s-p response share an id");
    }

    #[test]
    fn consecutive_ingress_keep_the_id() {
        let mut t = SyscallTraceIds::new(0);
        let a = t.assign(3, Ingress);
        let b = t.assign(3, Ingress);
        let c = t.assign(3, Egress);
        let d = t.assign(3, Egress);
        assert_eq!((a, a, a), (b, c, d));
    }

    #[test]
    fn egress_first_gets_an_id_and_following_ingress_a_new_one() {
        let mut t = SyscallTraceIds::new(0);
        let a = t.assign(9, Egress);
        let b = t.assign(9, Ingress);
        assert_ne!(a, b);
    }

    #[test]
    fn ids_are_unique_and_below_2_pow_53() {
        let mut t = SyscallTraceIds::new(0xFFFFF);
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000u32 {
            let id = t.assign(i % 13, if i % 2 == 0 { Ingress } else { Egress });
            assert!(id < ID_LIMIT);
            if i % 2 == 0 {
                assert!(seen.insert(id), "fresh id {id} reused");
            }
        }
        let t = SyscallTraceIds::new(u32::MAX);
        assert!(t.next < ID_LIMIT);
    }

    #[test]
    fn forget_restarts_a_thread() {
        let mut t = SyscallTraceIds::new(0);
        let a = t.assign(5, Ingress);
        t.forget(5);
        assert_eq!(t.threads(), 0);
        assert_ne!(a, t.assign(5, Ingress));
    }
}
