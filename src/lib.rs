//! The `relive` package's library half: the wiring every entry point
//! shares (the binary's commands, the benchmarks, the end-to-end tests).
//! Domain logic lives in the workspace crates; this only connects them.
#![deny(missing_docs)]

pub mod topology;
