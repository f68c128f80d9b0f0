//! What `relive parse` and `relive ingest` read: their shared flags and
//! the files under the paths given (not a command).

use std::path::{Path, PathBuf};

use anyhow::Context;
use parsers::{Format, ParseOptions};

use crate::cli::ParseArgs;

/// Validated settings for one run.
pub struct Settings {
    pub paths: Vec<PathBuf>,
    pub json: bool,
    pub options: ParseOptions,
}

impl Settings {
    /// Validates the flags.
    pub fn from_args(args: ParseArgs) -> anyhow::Result<Self> {
        let format = args
            .format
            .as_deref()
            .map(str::parse::<Format>)
            .transpose()?;
        let local_zone = args.timezone.parse()?;
        Ok(Settings {
            paths: args.paths,
            json: args.json,
            options: ParseOptions {
                format,
                local_zone,
                day_first: args.day_first,
                max_record_bytes: args.max_record_bytes.max(1024),
                evtx_threads: args.threads,
                default_host: args.host,
                year: None,
            },
        })
    }
}

/// Collects every file under the given paths, sorted, folders recursively.
pub fn expand_paths(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            files.push(path.clone());
            continue;
        }
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            walk(path, &mut files)?;
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        if entry.file_type()?.is_dir() {
            walk(&path, files)?;
        } else if !is_documentation(&name) {
            files.push(path);
        }
    }
    Ok(())
}

/// Files in sample folders that are not logs.
fn is_documentation(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".md") || lower == "expected.json" || lower.ends_with(".py")
}
