//! `einhorn-sim`: a pure-Rust Einhorn master simulator.
//!
//! This package is a skeleton for now; the master, `einhornsh` and
//! `einhorn-conformance` are built in later issues (see `docs/einhorn-sim.md`).
