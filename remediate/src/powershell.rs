//! Hyper-V through PowerShell: each action's playbook command rendered as a
//! script whose values arrive as data, sent through a configured transport
//! (for example `ssh HOST pwsh -NoProfile -NonInteractive -Command -`).
//!
//! Values never become script text. The script carries one Base64 string
//! (inert inside single quotes) that decodes to a JSON object of the
//! values; each placeholder `{name}` in the command becomes the variable
//! `$name`, assigned from that object. A VM named
//! `x'; Remove-Item C:\ -Recurse; '` is one string argument wherever the
//! command uses it. The host name goes to the transport as one argument
//! of its own, never through a shell, and only when it looks like a host
//! name.
//!
//! Not run against a real Windows host here (none can run on the machines
//! relive is built on): tested by rendering and through a stand-in
//! transport that records what it received.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::executor::{Candidate, ExecError, Executor, Migrated, Observation, VmPlace};
use crate::plan::{placeholders, Action};

/// `[remediation.powershell]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PowerShellConfig {
    /// The transport's argv; `{host}` (a whole element) is replaced by the
    /// action's target host. The script goes to its standard input.
    pub transport: Vec<String>,
    /// Longest run of one command, seconds.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
}

fn default_timeout() -> u64 {
    300
}

impl PowerShellConfig {
    /// Checks the transport.
    pub fn check(&self) -> Result<(), String> {
        if self.transport.is_empty() {
            return Err("[remediation.powershell] transport is empty".into());
        }
        Ok(())
    }
}

/// Base64 (standard alphabet, padded).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The script for an action: the values as one Base64 JSON literal, each
/// placeholder a variable, then the command.
pub fn render(action: &Action) -> Result<String, ExecError> {
    if action.command.trim().is_empty() {
        return Err(ExecError::Unsupported(
            "a manual step: no command to run".into(),
        ));
    }
    if let Some(m) = action.missing.first() {
        return Err(ExecError::Missing(format!("{{{m}}}")));
    }
    let names = placeholders(&action.command);
    let values: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .map(|n| {
            (
                n.to_string(),
                serde_json::Value::String(action.params.get(*n).cloned().unwrap_or_default()),
            )
        })
        .collect();
    let json = serde_json::to_vec(&values).unwrap_or_default();
    let mut script = String::from("$ErrorActionPreference = 'Stop'\n");
    script.push_str(&format!(
        "$relive = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('{}')) | ConvertFrom-Json\n",
        base64(&json)
    ));
    for n in &names {
        // `n` is [a-z_]+ (placeholders() accepts nothing else).
        script.push_str(&format!("${n} = [string]$relive.{n}\n"));
    }
    let mut command = action.command.clone();
    for n in &names {
        command = command.replace(&format!("{{{n}}}"), &format!("${n}"));
    }
    script.push_str(&command);
    script.push('\n');
    Ok(script)
}

/// A host name a transport may be given: letters, digits, `.`, `-`, `_`,
/// not starting with `-` (never an option).
fn host_ok(host: &str) -> bool {
    !host.is_empty()
        && !host.starts_with('-')
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}

/// The PowerShell executor.
#[derive(Debug, Clone)]
pub struct PowerShell {
    config: PowerShellConfig,
}

impl PowerShell {
    /// Over this transport.
    pub fn new(config: PowerShellConfig) -> PowerShell {
        PowerShell { config }
    }

    /// Runs a script on `host` through the transport; its output.
    pub fn run(&self, host: &str, script: &str) -> Result<String, ExecError> {
        if !host_ok(host) {
            return Err(ExecError::Transport(format!(
                "refused to pass {host:?} to the transport: not a host name"
            )));
        }
        let argv: Vec<String> = self
            .config
            .transport
            .iter()
            .map(|a| {
                if a == "{host}" {
                    host.to_string()
                } else {
                    a.clone()
                }
            })
            .collect();
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| ExecError::Transport(format!("cannot start {}: {e}", argv[0])))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| ExecError::Transport(format!("{}: {e}", argv[0])))?;
        }
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let out = std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(o) = stdout.as_mut() {
                let _ = o.read_to_end(&mut s);
            }
            s
        });
        let err = std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(e) = stderr.as_mut() {
                let _ = e.read_to_end(&mut s);
            }
            s
        });
        let deadline = Instant::now() + Duration::from_secs(self.config.timeout_s.max(1));
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(ExecError::Transport(format!(
                        "{} on {host}: no answer within {} s",
                        argv[0], self.config.timeout_s
                    )));
                }
                Err(e) => return Err(ExecError::Transport(format!("{}: {e}", argv[0]))),
            }
        };
        let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
        let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
        if status.success() {
            Ok(stdout)
        } else {
            Err(ExecError::Transport(format!(
                "{} on {host} exited with {status}: {}",
                argv[0],
                stderr.trim()
            )))
        }
    }

    fn host_of(action: &Action) -> Result<&str, ExecError> {
        action
            .target
            .as_deref()
            .or(action.params.get("source_host").map(String::as_str))
            .ok_or_else(|| ExecError::Missing("the host to run on".into()))
    }
}

impl Executor for PowerShell {
    fn name(&self) -> &'static str {
        "powershell"
    }

    fn can_run(&self, action: &Action) -> bool {
        !action.command.trim().is_empty()
    }

    fn judges(&self, action: &Action) -> bool {
        self.can_run(action) && action.healthy_if.is_some()
    }

    fn check(&self, action: &Action) -> Result<Observation, ExecError> {
        let out = self.run(Self::host_of(action)?, &render(action)?)?;
        let detail = out.trim().to_string();
        // A check judges by its playbook's `healthy_if`; without one its
        // output is for a human to read (see `judges`).
        let healthy = match &action.healthy_if {
            Some(pattern) => regex::Regex::new(pattern)
                .map_err(|e| ExecError::Unsupported(format!("healthy_if {pattern:?}: {e}")))?
                .is_match(&detail),
            None => false,
        };
        Ok(Observation { healthy, detail })
    }

    fn fix(&self, action: &Action) -> Result<String, ExecError> {
        self.run(Self::host_of(action)?, &render(action)?)
            .map(|o| o.trim().to_string())
    }

    fn vm_place(&self, vm: &str, host: &str) -> Result<VmPlace, ExecError> {
        let mut action = probe("Get-VM -ComputerName {source_host} -Name {vm_name} | Select-Object -ExpandProperty State", vm, host);
        action.target = Some(host.to_string());
        let out = self.run(host, &render(&action)?)?;
        Ok(match out.trim() {
            "" => VmPlace::Absent,
            "Running" => VmPlace::Running,
            _ => VmPlace::Migrating,
        })
    }

    fn candidates(
        &self,
        _vm: &str,
        _source: &str,
        _exclude: &[&str],
    ) -> Result<Vec<Candidate>, ExecError> {
        // The playbooks' own "other node" commands choose on Windows.
        Ok(Vec::new())
    }

    fn offer(
        &self,
        _vm: &str,
        _source: &str,
        _destination: &str,
    ) -> Result<Result<u64, String>, ExecError> {
        // Hyper-V's own limit check answers at the move itself.
        Ok(Ok(0))
    }

    fn migrate(&self, vm: &str, source: &str, destination: &str) -> Result<Migrated, ExecError> {
        let mut action = probe(
            "Move-VM -ComputerName {source_host} -Name {vm_name} -DestinationHost {destination_host}",
            vm,
            source,
        );
        action
            .params
            .insert("destination_host".into(), destination.to_string());
        match self.run(source, &render(&action)?) {
            Ok(out) => Ok(Migrated {
                id: String::new(),
                ok: true,
                signature: None,
                detail: out.trim().to_string(),
                blackout_ms: None,
                total_ms: None,
            }),
            Err(ExecError::Transport(why)) => Ok(Migrated {
                id: String::new(),
                ok: false,
                signature: Some("powershell".into()),
                detail: why,
                blackout_ms: None,
                total_ms: None,
            }),
            Err(e) => Err(e),
        }
    }
}

fn probe(command: &str, vm: &str, host: &str) -> Action {
    let mut params = std::collections::BTreeMap::new();
    params.insert("vm_name".to_string(), vm.to_string());
    params.insert("source_host".to_string(), host.to_string());
    Action {
        key: String::new(),
        stage: crate::plan::Stage::Confirm,
        title: String::new(),
        class: crate::plan::Class::Auto,
        target: Some(host.to_string()),
        command: command.to_string(),
        params,
        missing: Vec::new(),
        op: None,
        healthy_if: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn only_host_names_reach_the_transport() {
        assert!(host_ok("HV01.contoso.local"));
        assert!(!host_ok("-oProxyCommand=x"));
        assert!(!host_ok("a b"));
        assert!(!host_ok("a;reboot"));
        assert!(!host_ok(""));
    }
}
