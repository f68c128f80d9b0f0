//! End-to-end tests: they run the real `relive` binary.

mod parse;
mod search;
