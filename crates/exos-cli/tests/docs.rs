//! The documentation is executable: every ```console block of README.md
//! and docs/*.md runs, in order, in one scratch directory per document
//! (holding a copy of examples/), against the real `exos`, and must print
//! what the document shows. The command synopsis of README.md is checked
//! against `exos SUBCOMMAND --help`.
//!
//! Every command with `--json` must print exactly one JSON document.
//!
//! In a block, `$ COMMAND` runs COMMAND with `sh -c` (stdout and stderr
//! together); the lines up to the next `$ ` are its expected output, where
//! a line `...` stands for any number of lines, `[..]` inside a line for
//! any text, and a last line `[exit: N]` for the exit status (default 0).
//! Blocks that mount need /dev/fuse: without it they are skipped loudly,
//! and with CI=true the test fails instead.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// One `$ command` with what it must print.
#[derive(Debug)]
struct Step {
    line: usize,
    command: String,
    expected: Vec<String>,
    exit: i32,
}

fn steps(doc: &str) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    let mut in_block = false;
    let mut indent = 0;
    for (i, line) in doc.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block && line.trim() == "```console";
            // A block inside a list item is indented; so are its lines.
            indent = line.len() - line.trim_start().len();
            continue;
        }
        if !in_block {
            continue;
        }
        let line = line.get(indent..).unwrap_or(line.trim_start());
        if let Some(cmd) = line.strip_prefix("$ ") {
            out.push(Step {
                line: i + 1,
                command: cmd.to_string(),
                expected: Vec::new(),
                exit: 0,
            });
        } else if let Some(step) = out.last_mut() {
            if step.command.ends_with('\\') && step.expected.is_empty() {
                step.command.pop();
                step.command.push_str(line.trim_start());
            } else if let Some(code) = line
                .strip_prefix("[exit: ")
                .and_then(|l| l.strip_suffix(']'))
            {
                step.exit = code.parse().expect("[exit: N]");
            } else {
                step.expected.push(line.to_string());
            }
        }
    }
    out
}

/// Does `actual` match `pattern` (with `[..]` wildcards)?
fn line_matches(pattern: &str, actual: &str) -> bool {
    let parts: Vec<&str> = pattern.split("[..]").collect();
    if parts.len() == 1 {
        return pattern == actual;
    }
    let mut rest = actual;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// Matches output lines against expected lines with `...` gaps.
fn output_matches(expected: &[String], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((e, rest)) if e == "..." => {
            (0..=actual.len()).any(|skip| output_matches(rest, &actual[skip..]))
        }
        Some((e, rest)) => {
            !actual.is_empty() && line_matches(e, actual[0]) && output_matches(rest, &actual[1..])
        }
    }
}

fn unmount_all_below(dir: &Path) {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").arg(p).status();
    }
}

fn run_document(name: &str) {
    let path = repo().join(name);
    let doc = fs::read_to_string(&path).unwrap();
    let steps = steps(&doc);
    if steps.is_empty() {
        return;
    }
    let mounts = steps.iter().any(|s| s.command.contains("exos mount"));
    if mounts && !Path::new("/dev/fuse").exists() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "{name} mounts, /dev/fuse is missing and CI=true"
        );
        eprintln!("\n!!!!!!!! /dev/fuse is missing: {name} examples NOT RUN !!!!!!!!\n");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().canonicalize().unwrap();
    let copied = Command::new("cp")
        .arg("-r")
        .arg(repo().join("examples"))
        .arg(&work)
        .status()
        .unwrap();
    assert!(copied.success());
    let bin = Path::new(env!("CARGO_BIN_EXE_exos"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path_var = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut failures = Vec::new();
    for step in &steps {
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!("{} 2>&1", step.command))
            .current_dir(&work)
            .env("PATH", &path_var)
            .env("TZ", "UTC")
            .env("COLUMNS", "100")
            .env_remove("EXOS_ROOT")
            .env_remove("EXOS_LOG")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).replace(&work.display().to_string(), "$WORK");
        let actual: Vec<&str> = text.lines().collect();
        let code = o.status.code().unwrap_or(-1);
        // Every --json output is one JSON document, failures included.
        if step.command.contains("--json") {
            if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
                failures.push(format!(
                    "{name}:{}: $ {}\n--- not one JSON document ({e}):\n{text}",
                    step.line, step.command
                ));
            }
        }
        if code != step.exit || !output_matches(&step.expected, &actual) {
            failures.push(format!(
                "{name}:{}: $ {}\n--- expected (exit {}):\n{}\n--- got (exit {code}):\n{}",
                step.line,
                step.command,
                step.exit,
                step.expected.join("\n"),
                actual.join("\n")
            ));
        }
    }
    unmount_all_below(&work);
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn readme_examples_run_as_shown() {
    run_document("README.md");
}

#[test]
fn docs_examples_run_as_shown() {
    let dir = repo().join("docs");
    let Ok(entries) = fs::read_dir(&dir) else {
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            run_document(&format!(
                "docs/{}",
                p.file_name().unwrap().to_string_lossy()
            ));
        }
    }
}

/// Every option the README's synopsis shows exists in `exos X --help`.
#[test]
fn the_synopsis_matches_the_cli() {
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find("## The `exos` command")
        .expect("synopsis section");
    let block = &readme[start..];
    let block = &block[block.find("```\n").unwrap() + 4..];
    let block = &block[..block.find("```").unwrap()];
    let mut checked = 0;
    let mut current: Option<(String, String)> = None;
    let mut lines: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        if let Some(rest) = line.strip_prefix("exos ") {
            if let Some(c) = current.take() {
                lines.push(c);
            }
            let sub = rest.split_whitespace().next().unwrap().to_string();
            current = Some((sub, rest.to_string()));
        } else if let Some((_, text)) = current.as_mut() {
            text.push(' ');
            text.push_str(line.trim());
        }
    }
    lines.extend(current);
    // Every command `exos --help` lists is in the synopsis.
    let top = Command::new(env!("CARGO_BIN_EXE_exos"))
        .arg("--help")
        .output()
        .unwrap();
    let top = String::from_utf8_lossy(&top.stdout).into_owned();
    let commands = &top[top.find("Commands:").unwrap()..top.find("Options:").unwrap()];
    for command in commands
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
    {
        assert!(
            command == "help" || lines.iter().any(|(sub, _)| sub == command),
            "README synopsis does not show `exos {command}`"
        );
    }
    for (sub, text) in lines {
        // A second plain lower-case word names a subcommand
        // (`exos trust add KEY`); placeholders are upper case.
        let second = text
            .split_whitespace()
            .nth(1)
            .filter(|w| w.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'));
        let args: Vec<&str> = match (sub.as_str(), second) {
            ("state", _) => vec!["state", "list", "--help"],
            // The global options line: `exos [--json] [-q] COMMAND`.
            (global, _) if global.starts_with('[') => vec!["--help"],
            (_, Some(second)) => vec![sub.as_str(), second, "--help"],
            _ => vec![sub.as_str(), "--help"],
        };
        let o = Command::new(env!("CARGO_BIN_EXE_exos"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "exos {sub} --help failed: the synopsis names a command that does not exist"
        );
        let help = String::from_utf8_lossy(&o.stdout);
        for flag in text
            .split(|c: char| c.is_whitespace() || matches!(c, '[' | ']' | '|' | '='))
            .filter(|w| w.starts_with('-') && w.len() > 1 && *w != "-" && !w.starts_with("-a."))
        {
            let flag = flag.trim_end_matches("...").trim_end_matches(',');
            assert!(
                help.contains(flag),
                "README synopsis: `exos {sub}` shows {flag}, which `exos {} ` does not know",
                args.join(" ")
            );
            checked += 1;
        }
    }
    assert!(checked > 30, "{checked}");
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(repo());
    c
}

/// ARCHITECTURE.md draws every `exos-*` dependency edge; they are the ones
/// the Cargo.toml files declare (dev-dependencies noted apart).
#[test]
fn architecture_draws_the_real_dependency_edges() {
    let o = cargo()
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let arch = fs::read_to_string(repo().join("ARCHITECTURE.md")).unwrap();
    let mut crates = 0;
    for package in meta["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        if !name.starts_with("exos-") {
            continue;
        }
        let mut deps: Vec<&str> = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null())
            .filter_map(|d| d["name"].as_str())
            .filter(|d| d.starts_with("exos-"))
            .collect();
        deps.sort_unstable();
        let line = arch
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")) && l.contains("──→"))
            .unwrap_or_else(|| panic!("ARCHITECTURE.md draws no edges for {name}"));
        let drawn = line.split("──→").nth(1).unwrap();
        let drawn = drawn.split('(').next().unwrap();
        let mut drawn: Vec<&str> = drawn
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .collect();
        drawn.sort_unstable();
        assert_eq!(drawn, deps, "ARCHITECTURE.md: edges of {name}");
        crates += 1;
    }
    assert!(crates >= 8, "{crates}");
}

/// The package manager is a library without FUSE: a daemon or a GUI can
/// link it without fuser, notify or libfuse.
#[test]
fn the_manager_builds_without_fuse() {
    let o = cargo()
        .args([
            "tree",
            "-p",
            "exos-manager",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tree = String::from_utf8_lossy(&o.stdout);
    assert!(tree.contains("exos-resolve"), "{tree}");
    for fuse in ["fuser", "notify", "exos-packagefs"] {
        assert!(
            !tree.lines().any(|l| l.starts_with(&format!("{fuse} "))),
            "exos-manager depends on {fuse}:\n{tree}"
        );
    }
}
