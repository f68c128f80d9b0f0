//! Embeds the shipped `rules/` and `playbooks/` so the binary works from any folder.

use std::fmt::Write as _;
use std::path::Path;

fn embed(dir: &Path, ext: &[&str], out: &mut String, name: &str) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p: &std::path::PathBuf| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ext.contains(&e))
    });
    files.sort();
    writeln!(out, "/// Shipped `{name}` files: (file name, contents).").unwrap();
    writeln!(
        out,
        "pub const {}: &[(&str, &str)] = &[",
        name.to_uppercase()
    )
    .unwrap();
    for f in files {
        println!("cargo:rerun-if-changed={}", f.display());
        let file_name = f.file_name().unwrap().to_string_lossy().into_owned();
        writeln!(
            out,
            "    ({file_name:?}, include_str!({:?})),",
            f.canonicalize().unwrap()
        )
        .unwrap();
    }
    writeln!(out, "];").unwrap();
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = String::new();
    embed(&root.join("rules"), &["yml", "yaml"], &mut out, "rules");
    embed(&root.join("playbooks"), &["toml"], &mut out, "playbooks");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("shipped.rs");
    std::fs::write(dest, out).unwrap();
}
