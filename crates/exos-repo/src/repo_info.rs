//! `repo.info`: the repository description Haiku serves beside `repo` (a
//! driver-settings text: `name HaikuPorts`, `vendor "Haiku Project"`, …).
//! `exos repo index` writes it, and keeps what a publisher wrote there by
//! hand: the one parser of the format, [`RepoInfoText::parse`], bounded
//! (64 KiB, 256 lines kept), refusing what it does not understand with the
//! file and the line.

use std::path::Path;

use crate::RepoError;

/// Larger files are refused.
pub const MAX_FILE: usize = 64 * 1024;
/// At most this many settings.
const MAX_LINES: usize = 256;

/// What a `repo.info` says, by field (empty when absent). Lines it has no
/// field for are kept as they were, to be written back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoInfoText {
    /// `name`.
    pub name: String,
    /// `vendor`.
    pub vendor: String,
    /// `summary`.
    pub summary: String,
    /// `priority`.
    pub priority: Option<u8>,
    /// `baseurl`.
    pub base_url: String,
    /// `identifier`.
    pub identifier: String,
    /// `architecture`.
    pub architecture: String,
    /// Settings of other names, as written (`license "MIT"`, …).
    pub other: Vec<String>,
}

/// Splits a driver-settings line into its words: quoted (with `\` escapes)
/// or bare; `#` starts a comment outside quotes.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            None | Some('#') => return Ok(out),
            Some('"') => {
                chars.next();
                let mut w = String::new();
                loop {
                    match chars.next() {
                        None => return Err("an unterminated quote".into()),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => w.push(c),
                            None => return Err("a line ending in a backslash".into()),
                        },
                        Some(c) => w.push(c),
                    }
                }
                out.push(w);
            }
            Some('{') | Some('}') => return Err("blocks ({ }) are not used in repo.info".into()),
            Some(_) => {
                let mut w = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || c == '#' || c == '"' {
                        break;
                    }
                    if c == '\\' {
                        chars.next();
                        match chars.next() {
                            Some(e) => w.push(e),
                            None => return Err("a line ending in a backslash".into()),
                        }
                        continue;
                    }
                    w.push(c);
                    chars.next();
                }
                out.push(w);
            }
        }
    }
}

impl RepoInfoText {
    /// Parses the file's bytes; `path` names it in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<RepoInfoText, RepoError> {
        let err = |line: Option<usize>, why: String| {
            let file = match line {
                Some(n) => format!("{}:{n}", path.display()),
                None => path.display().to_string(),
            };
            RepoError::invalid(file, why)
        };
        if bytes.len() > MAX_FILE {
            return Err(err(None, format!("larger than {MAX_FILE} bytes")));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| err(None, "not UTF-8".into()))?;
        let mut info = RepoInfoText::default();
        let mut lines = 0;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let w = words(line).map_err(|why| err(Some(n), why))?;
            let Some((key, values)) = w.split_first() else {
                continue;
            };
            lines += 1;
            if lines > MAX_LINES {
                return Err(err(Some(n), format!("more than {MAX_LINES} settings")));
            }
            let one = || -> Result<String, RepoError> {
                match values {
                    [v] => Ok(v.clone()),
                    _ => Err(err(Some(n), format!("{key} takes one value"))),
                }
            };
            match key.to_ascii_lowercase().as_str() {
                "name" => info.name = one()?,
                "vendor" => info.vendor = one()?,
                "summary" => info.summary = one()?,
                "baseurl" | "url" => info.base_url = one()?,
                "identifier" => info.identifier = one()?,
                "architecture" => info.architecture = one()?,
                "priority" => {
                    let v = one()?;
                    info.priority =
                        Some(v.parse().map_err(|_| {
                            err(Some(n), format!("priority {v:?} is not 0 to 255"))
                        })?);
                }
                _ => info.other.push(line.trim().to_string()),
            }
        }
        Ok(info)
    }

    /// Reads `dir/repo.info` if there is one.
    pub fn read(dir: &Path) -> Result<Option<RepoInfoText>, RepoError> {
        use std::io::Read;
        let path = dir.join("repo.info");
        let f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(RepoError::io(&path, e)),
        };
        let mut bytes = Vec::new();
        f.take(MAX_FILE as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| RepoError::io(&path, e))?;
        RepoInfoText::parse(&bytes, &path).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<RepoInfoText, String> {
        RepoInfoText::parse(s.as_bytes(), Path::new("repo.info")).map_err(|e| e.to_string())
    }

    #[test]
    fn haikus_own_repo_info_parses_and_bad_ones_name_the_line() {
        let text = "name HaikuPorts\nvendor \"Haiku Project\"\nsummary \"The \\\"ports\\\" repository\" # a comment\npriority 1\nbaseurl https://eu.hpkg.haiku-os.org/haikuports/master/x86_64/current\nidentifier tag:haikuports.org,2013:repositories/haikuports/master/x86_64\narchitecture x86_64\nlicense \"MIT\"\n\n# end\n";
        let i = parse(text).unwrap();
        assert_eq!(i.name, "HaikuPorts");
        assert_eq!(i.vendor, "Haiku Project");
        assert_eq!(i.summary, "The \"ports\" repository");
        assert_eq!(i.priority, Some(1));
        assert!(i.base_url.starts_with("https://"));
        assert_eq!(i.architecture, "x86_64");
        assert_eq!(i.other, ["license \"MIT\""]);
        for (bad, rule) in [
            ("name \"open", "repo.info:1: an unterminated quote"),
            ("name a\nvendor a b", "repo.info:2: vendor takes one value"),
            ("priority 300", "not 0 to 255"),
            ("name {", "blocks"),
            ("name a\\", "backslash"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(rule), "{bad}: {e}");
        }
        assert!(parse(&"x\n".repeat(300))
            .unwrap_err()
            .contains("more than 256"));
        assert!(parse(&"#".repeat(MAX_FILE + 1))
            .unwrap_err()
            .contains("larger"));
        assert!(RepoInfoText::parse(&[0xff], Path::new("repo.info")).is_err());
    }
}
