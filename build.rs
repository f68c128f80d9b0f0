//! The `relive` binary is linked position-independent (the toolchain's
//! default), so its code is address-randomized like its libraries: it is
//! a network daemon that parses hostile input. On Linux the relative
//! relocations of a PIE are packed (`-z pack-relative-relocs`, DT_RELR:
//! glibc 2.36 or newer), which keeps the start-up cost of applying them
//! small (BENCHMARKS.md, "Start-up").

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RELIVE_NO_RELR");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if linux && std::env::var_os("RELIVE_NO_RELR").is_none() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
