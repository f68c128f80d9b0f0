//! End-to-end tests: they run the real `relive` binary.

mod incidents;
mod parse;
mod search;
