//! End-to-end tests: they run the real `relive` binary.

mod alerts;
mod collector;
mod host;
mod in_doubt;
mod incidents;
mod parse;
mod search;
mod streaming;
mod terminal;

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

/// Kills the child processes when the test ends, however it ends.
pub struct Procs(pub Vec<std::process::Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The secret (migration HMAC key and control token) of the test hosts.
pub const HOST_SECRET: &str = "e2e-host-secret-0123456789";

/// The `[auth]` table of a test host.
pub fn host_auth() -> String {
    format!("[auth]\ndefault_secret = \"{HOST_SECRET}\"\ncontrol_token = \"{HOST_SECRET}\"\n")
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
