//! Debian control data: one deb822 paragraph, relationship fields, and the
//! `update-alternatives --install` calls of a maintainer script.

use crate::version::DebVersion;

/// Largest control file or maintainer script read (Debian's are a few KiB).
pub const MAX_CONTROL: usize = 1 << 20;

/// The fields of one paragraph, names lowercased, in file order.
#[derive(Debug, Clone, Default)]
pub struct Paragraph {
    fields: Vec<(String, String)>,
}

impl Paragraph {
    /// Parses the first paragraph of a control file; `file` names it in
    /// errors.
    pub fn parse(text: &str, file: &str) -> Result<Paragraph, String> {
        if text.len() > MAX_CONTROL {
            return Err(format!("{file}: larger than {MAX_CONTROL} bytes"));
        }
        let mut fields: Vec<(String, String)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                if fields.is_empty() {
                    continue;
                }
                break;
            }
            if line.starts_with('#') {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                let Some(last) = fields.last_mut() else {
                    return Err(format!(
                        "{file}: line {}: continuation line before any field",
                        n + 1
                    ));
                };
                last.1.push('\n');
                last.1.push_str(line.trim());
                continue;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(format!("{file}: line {}: not a `Field: value` line", n + 1));
            };
            let name = name.to_ascii_lowercase();
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!("{file}: line {}: bad field name {name:?}", n + 1));
            }
            if fields.iter().any(|(f, _)| *f == name) {
                return Err(format!(
                    "{file}: line {}: field {name:?} given twice",
                    n + 1
                ));
            }
            fields.push((name, value.trim().to_string()));
        }
        Ok(Paragraph { fields })
    }

    /// The value of field `name` (names compare exactly), if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(f, _)| f == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of field `name`, which must be present and non-empty; `file` names the package in the error.
    pub fn require(&self, name: &str, file: &str) -> Result<&str, String> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("{file}: no {name:?} field"))
    }
}

/// A relation operator of Debian's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<<`: strictly earlier.
    Less,
    /// `<=` (and the obsolete `<`).
    LessEq,
    /// `=`: exactly this version.
    Eq,
    /// `>=` (and the obsolete `>`).
    GreaterEq,
    /// `>>`: strictly later.
    Greater,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "<<" => Op::Less,
            "<=" | "<" => Op::LessEq, // `<` is the obsolete spelling of `<=`
            "=" => Op::Eq,
            ">=" | ">" => Op::GreaterEq, // likewise `>` of `>=`
            ">>" => Op::Greater,
            _ => return None,
        })
    }

    /// The EXOS range operator.
    pub fn exos(self) -> &'static str {
        match self {
            Op::Less => "<",
            Op::LessEq => "<=",
            Op::Eq => "=",
            Op::GreaterEq => ">=",
            Op::Greater => ">",
        }
    }
}

/// One package named in a relationship field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// The package (or virtual package) named.
    pub package: String,
    /// The version constraint, if any.
    pub version: Option<(Op, DebVersion)>,
}

/// A relationship field: a list of alternatives groups (`a | b, c`).
pub fn relations(field: &str, value: &str) -> Result<Vec<Vec<Relation>>, String> {
    let mut out = Vec::new();
    for group in value.split(',') {
        let group = group.trim();
        if group.is_empty() {
            continue;
        }
        let mut alternatives = Vec::new();
        for alt in group.split('|') {
            alternatives.push(relation(field, alt.trim())?);
        }
        out.push(alternatives);
    }
    Ok(out)
}

fn relation(field: &str, s: &str) -> Result<Relation, String> {
    let bad = |why: &str| format!("{field}: {s:?}: {why}");
    let (name, rest) = match s.find(['(', '[', '<', ' ']) {
        Some(i) => (s[..i].trim(), s[i..].trim()),
        None => (s, ""),
    };
    // `pkg:any`, `pkg:native`, `pkg:amd64`: the architecture does not matter here.
    let name = name.split(':').next().unwrap_or(name);
    let valid = name.len() >= 2
        && name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    if !valid {
        return Err(bad("not a Debian package name"));
    }
    let mut version = None;
    if let Some(inner) = rest.strip_prefix('(') {
        let inner = inner
            .split_once(')')
            .ok_or_else(|| bad("unclosed parenthesis"))?
            .0
            .trim();
        let split = inner
            .find(|c: char| !"<>=".contains(c))
            .ok_or_else(|| bad("no version after the operator"))?;
        let op = Op::parse(inner[..split].trim()).ok_or_else(|| bad("unknown operator"))?;
        let v = DebVersion::parse(inner[split..].trim()).map_err(|e| bad(&e))?;
        version = Some((op, v));
    }
    Ok(Relation {
        package: name.to_string(),
        version,
    })
}

/// Debian package names may hold `-`, which EXOS names may not; Debian
/// names never hold `_`, so this is one-to-one.
pub fn exos_name(debian: &str) -> String {
    debian.replace('-', "_")
}

/// An `update-alternatives --install LINK NAME PATH PRIORITY` call (and its
/// `--slave LINK NAME PATH`s, as more links of the same choice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternative {
    /// The alternative's name (`editor`, `x-www-browser`).
    pub name: String,
    /// Its priority: the highest installed one is chosen.
    pub priority: i64,
    /// (link, path) pairs: the master first.
    pub links: Vec<(String, String)>,
}

/// The literal `update-alternatives --install` calls of a maintainer
/// script. Calls built from shell variables are skipped: only what the
/// script states literally can become data.
pub fn alternatives(script: &str) -> Vec<Alternative> {
    let joined = script.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = words.iter().position(|w| *w == "--install") else {
            continue;
        };
        if !words[..at]
            .iter()
            .any(|w| w.ends_with("update-alternatives"))
        {
            continue;
        }
        let args = &words[at + 1..];
        if args.len() < 4 || args.iter().any(|w| w.contains(['$', '`', '"', '\''])) {
            continue;
        }
        let Ok(priority) = args[3].parse::<i64>() else {
            continue;
        };
        let mut alt = Alternative {
            name: args[1].to_string(),
            priority,
            links: vec![(args[0].to_string(), args[2].to_string())],
        };
        let mut rest = &args[4..];
        while rest.len() >= 4 && rest[0] == "--slave" {
            alt.links.push((rest[1].to_string(), rest[3].to_string()));
            rest = &rest[4..];
        }
        if alt
            .links
            .iter()
            .all(|(l, p)| l.starts_with('/') && p.starts_with('/'))
        {
            out.push(alt);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_and_relations() {
        let text = "Package: libfoo-dev\nVersion: 1:2.0-1\nDepends: libc6 (>= 2.34), python3:any (<< 3.12~) | pypy, dash\nDescription: short\n more\n .\n";
        let p = Paragraph::parse(text, "control").unwrap();
        assert_eq!(p.get("package"), Some("libfoo-dev"));
        assert_eq!(p.get("description"), Some("short\nmore\n."));
        let deps = relations("Depends", p.get("depends").unwrap()).unwrap();
        assert_eq!(deps.len(), 3);
        assert_eq!(deps[1][0].package, "python3");
        assert_eq!(deps[1][0].version.as_ref().unwrap().0, Op::Less);
        assert_eq!(deps[1][1].package, "pypy");
        assert_eq!(exos_name("libfoo-dev"), "libfoo_dev");
        for bad in ["Package: a\nPackage: b\n", " cont\n", "nocolon\n"] {
            assert!(Paragraph::parse(bad, "control").is_err(), "{bad:?}");
        }
        for bad in ["A", "x (>= 1", "x (~ 1)", "x (>=)", "x (>= a)"] {
            assert!(relations("Depends", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn literal_alternatives_only() {
        let script = "#!/bin/sh\nupdate-alternatives --install /usr/bin/awk awk /usr/bin/mawk 5 \\\n  --slave /usr/share/man/man1/awk.1.gz awk.1.gz /usr/share/man/man1/mawk.1.gz\nupdate-alternatives --install /usr/bin/$x x /usr/bin/y 1\n";
        let alts = alternatives(script);
        assert_eq!(alts.len(), 1);
        assert_eq!(alts[0].name, "awk");
        assert_eq!(alts[0].priority, 5);
        assert_eq!(alts[0].links.len(), 2);
        assert_eq!(
            alts[0].links[0],
            ("/usr/bin/awk".into(), "/usr/bin/mawk".into())
        );
    }
}
