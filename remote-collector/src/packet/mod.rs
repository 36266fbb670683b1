//! N spans and L4 flows from packet capture (signal `n`): capture sockets in
//! every network namespace (capture.rs), header parsing (parse.rs), per-flow
//! reassembly, HTTP pairing and flow records (table.rs), namespaces, interfaces
//! and the observation-point rule (netns.rs).

pub mod capture;
pub mod netns;
pub mod parse;
pub mod table;
