//! Links the `relive` binary as a fixed-position executable: it carries
//! about 140,000 relative relocations (tantivy, polars, tokio …) that a
//! position-independent one applies at every start, a few milliseconds
//! of page faults for a `relive parse` that may itself take tens. The
//! cost: no address randomization for the binary's own code (libraries and
//! the heap, stack and mmaps stay randomized); relive has no unsafe code of
//! its own and reads logs as data only.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
