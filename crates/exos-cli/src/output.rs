//! How commands print. With `--json` a command prints exactly one JSON
//! document on standard output — a `#[derive(Serialize)]` type, documented
//! in docs/json.md — and an error is `{"error": {...}}` there too. Without
//! it, text for people. `-q` silences everything but errors and the data a
//! command was asked for (a listing, a checksum, a status).

use std::io::Write;

use anyhow::{Context, Result};
use serde::Serialize;

/// The global output flags.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
    pub quiet: bool,
}

impl Out {
    /// Prints a command's result: `value` as JSON, else `human(value)`.
    pub fn result<T: Serialize>(&self, value: &T, human: impl FnOnce(&T) -> String) -> Result<()> {
        if self.json {
            write_json(value)
        } else {
            write_stdout(&human(value))
        }
    }

    /// Prints a command's report: `value` as JSON, else `human(value)`
    /// unless `-q` (a report is not data the user asked for).
    pub fn report<T: Serialize>(&self, value: &T, human: impl FnOnce(&T) -> String) -> Result<()> {
        if self.json {
            write_json(value)
        } else if self.quiet {
            Ok(())
        } else {
            write_stdout(&human(value))
        }
    }

    /// A note for people on standard error (never with `-q` or `--json`).
    pub fn note(&self, text: impl std::fmt::Display) {
        if !self.quiet && !self.json {
            eprintln!("exos: {text}");
        }
    }
}

/// Writes to stdout, treating a closed pipe (`exos list | head`) as success.
pub fn write_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to standard output"),
    }
}

/// Writes one pretty-printed JSON document (streamed: large listings are
/// never built in memory) and a newline.
pub fn write_json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = serde_json::to_writer_pretty(&mut out, value)
        .map_err(std::io::Error::from)
        .and_then(|_| out.write_all(b"\n"))
        .and_then(|_| out.flush());
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to standard output"),
    }
}

/// A failure whose details the command has already printed (its own JSON
/// report): `main` adds nothing but the exit code.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Reported(pub String);

/// `{"error": {...}}`, what `--json` prints when a command fails.
#[derive(Serialize)]
pub struct ErrorReport<'a> {
    pub error: ErrorBody<'a>,
}

#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub message: &'a str,
    /// `invalid-file`, `unsatisfiable`, `needs-consent`, `essential` or
    /// `failed`.
    pub kind: &'a str,
    pub exit_code: u8,
}

/// Sizes for people: `636 B`, `1.46 KiB`.
pub fn bytes(n: u64) -> String {
    indicatif::BinaryBytes(n).to_string()
}

/// `exos manual --dir`: the manual pages written.
#[derive(Debug, Serialize)]
pub struct ManualReport {
    pub pages: Vec<std::path::PathBuf>,
}

/// An error and its causes on one line, `outer: cause: root cause`.
///
/// Typed errors may print their source in their own message (so a plain
/// `{e}` stays useful); a cause whose text the line already holds is not
/// repeated.
pub fn error_chain(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.is_empty() {
            line = text;
        } else if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: {source}")]
    struct Repeats {
        path: &'static str,
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let e = anyhow::Error::new(Repeats {
            path: "/k.minisig",
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        })
        .context("verifying");
        assert_eq!(error_chain(&e), "verifying: /k.minisig: gone");
        let plain = anyhow::anyhow!("root").context("middle").context("top");
        assert_eq!(error_chain(&plain), "top: middle: root");
    }
}

/// What a progress bar counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counting {
    /// Bytes (shown with a rate).
    Bytes,
    /// Items of work (files, packages, parts).
    Items,
}

/// A progress bar on the terminal (stderr) for `total` units of `what`;
/// none when quiet, with --json or when stderr is not a terminal.
pub fn progress_bar(
    out: Out,
    total: u64,
    what: &str,
    counting: Counting,
) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if out.quiet || out.json || !std::io::stderr().is_terminal() {
        return None;
    }
    let template = match counting {
        Counting::Bytes => "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        Counting::Items => "{msg} [{bar:30}] {pos}/{len} eta {eta}",
    };
    let pb = indicatif::ProgressBar::new(total);
    pb.set_style(
        indicatif::ProgressStyle::with_template(template)
            .expect("a valid template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    Some(pb)
}
