//! End-to-end tests: they run the real `relive` binary.

mod incidents;
mod parse;
mod search;

/// Runs the real binary with `--data` and the arguments, from the repository root.
pub fn relive(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_relive"))
        .arg("--data")
        .arg(data)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run relive")
}
