//! # exos-version — the vocabulary packages are named in
//!
//! Haiku's version grammar and order ([`version`]: `Version`,
//! `VersionRef`, `natural_compare`), architectures, the operators of a
//! requirement, `provides` and `requires` entries ([`Provides`],
//! [`Resolvable`]) and the rules for names ([`check_name`]). Shared by the
//! package format (exos-hpkg), the manifest model (exos-manifest) and the
//! resolver (exos-resolve), which therefore needs none of the format's
//! compression or crypto crates.

#![forbid(unsafe_code)]

use std::fmt;

pub mod version;

pub use version::{natural_compare, Version, VersionRef};

/// Target architecture (enumeration stored as a uint); serialized by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Architecture {
    #[default]
    /// Any architecture (data, scripts).
    Any,
    /// 32-bit x86.
    X86,
    /// 32-bit x86 with Haiku's legacy GCC 2 ABI.
    X86Gcc2,
    /// A source package.
    Source,
    /// 64-bit x86.
    X86_64,
    /// 32-bit PowerPC.
    Ppc,
    /// 32-bit ARM.
    Arm,
    /// Motorola 68000.
    M68k,
    /// SPARC.
    Sparc,
    /// 64-bit ARM (aarch64).
    Arm64,
    /// 64-bit RISC-V.
    Riscv64,
}

const ARCH_NAMES: [&str; 11] = [
    "any", "x86", "x86_gcc2", "source", "x86_64", "ppc", "arm", "m68k", "sparc", "arm64", "riscv64",
];
const ARCHS: [Architecture; 11] = [
    Architecture::Any,
    Architecture::X86,
    Architecture::X86Gcc2,
    Architecture::Source,
    Architecture::X86_64,
    Architecture::Ppc,
    Architecture::Arm,
    Architecture::M68k,
    Architecture::Sparc,
    Architecture::Arm64,
    Architecture::Riscv64,
];

impl serde::Serialize for Architecture {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl Architecture {
    /// The architecture a stored attribute value names; `None` past the known ones.
    pub fn from_raw(v: u64) -> Option<Self> {
        ARCHS.get(usize::try_from(v).ok()?).copied()
    }
    /// The value stored in a package attribute.
    pub fn raw(self) -> u64 {
        ARCHS.iter().position(|&a| a == self).unwrap() as u64
    }
    /// Haiku's name (`x86_64`, `any`).
    pub fn name(self) -> &'static str {
        ARCH_NAMES[self.raw() as usize]
    }
    /// The architecture of Haiku's name; `None` for an unknown name.
    pub fn from_name(s: &str) -> Option<Self> {
        ARCH_NAMES.iter().position(|&n| n == s).map(|i| ARCHS[i])
    }
    /// The architecture of the machine running this code, in Haiku's naming.
    pub fn host() -> Self {
        match std::env::consts::ARCH {
            "x86_64" => Architecture::X86_64,
            "x86" => Architecture::X86,
            "aarch64" => Architecture::Arm64,
            "arm" => Architecture::Arm,
            "riscv64" => Architecture::Riscv64,
            "powerpc" => Architecture::Ppc,
            "sparc" => Architecture::Sparc,
            "m68k" => Architecture::M68k,
            _ => Architecture::Any,
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Comparison operator of a requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `<`
    Less,
    /// `<=`
    LessEqual,
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
    /// `>=`
    GreaterEqual,
    /// `>`
    Greater,
}

const OPS: [(Operator, &str); 6] = [
    (Operator::Less, "<"),
    (Operator::LessEqual, "<="),
    (Operator::Equal, "=="),
    (Operator::NotEqual, "!="),
    (Operator::GreaterEqual, ">="),
    (Operator::Greater, ">"),
];

impl Operator {
    /// The operator a stored attribute value names; `None` past the known ones.
    pub fn from_raw(v: u64) -> Option<Self> {
        OPS.get(usize::try_from(v).ok()?).map(|o| o.0)
    }
    /// The value stored in a package attribute.
    pub fn raw(self) -> u64 {
        OPS.iter().position(|o| o.0 == self).unwrap() as u64
    }
    /// Haiku's token (`>=`, `==`).
    pub fn symbol(self) -> &'static str {
        OPS[self.raw() as usize].1
    }
    /// Accepts Haiku's tokens plus a single `=` as a synonym of `==`.
    pub fn from_symbol(s: &str) -> Option<Self> {
        if s == "=" {
            return Some(Operator::Equal);
        }
        OPS.iter().find(|o| o.1 == s).map(|o| o.0)
    }
}

/// A `provides` entry: `name [= version] [compatible >= version]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct Provides {
    /// The name provided (a package name or an API, `lib:libfoo`).
    pub name: String,
    /// The version provided, if any.
    pub version: Option<Version>,
    /// The oldest version this one is compatible with, if given.
    pub compatible: Option<Version>,
}

/// A `requires`/`supplements`/`conflicts`/`freshens` entry: `name [op version]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resolvable {
    /// The name required.
    pub name: String,
    /// The version constraint, if any.
    pub constraint: Option<(Operator, Version)>,
}

impl Resolvable {
    /// Parses `name`, `name >= 1.0` or `name>=1.0`.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        let op_start = s.find(['<', '>', '=', '!']);
        let Some(i) = op_start else {
            check_name(s)?;
            return Ok(Resolvable {
                name: s.to_string(),
                constraint: None,
            });
        };
        let name = s[..i].trim();
        check_name(name)?;
        let rest = &s[i..];
        let op_len = rest
            .find(|c: char| !matches!(c, '<' | '>' | '=' | '!'))
            .unwrap_or(rest.len());
        let op = Operator::from_symbol(&rest[..op_len])
            .ok_or_else(|| format!("unknown operator {:?} in {s:?}", &rest[..op_len]))?;
        let version = Version::parse(&rest[op_len..])?;
        Ok(Resolvable {
            name: name.to_string(),
            constraint: Some((op, version)),
        })
    }
}

/// Serialized as its text form (`lib:libfoo>=2.0`).
impl serde::Serialize for Resolvable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Resolvable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some((op, v)) = &self.constraint {
            write!(f, "{}{}", op.symbol(), v)?;
        }
        Ok(())
    }
}

/// Longest package or resolvable name (a package's name is a directory
/// name in a mounted view).
pub const MAX_NAME_LENGTH: usize = 255;

/// Resolvable and package names: not empty, `.` or `..`, at most 255 bytes,
/// no whitespace or control characters, none of `- / < > = !`.
pub fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a name"));
    }
    if name.len() > MAX_NAME_LENGTH {
        return Err(format!(
            "name of {} bytes is longer than {MAX_NAME_LENGTH}",
            name.len()
        ));
    }
    // Most names are ASCII letters, digits and a little punctuation: check
    // those bytes without decoding characters (index loading checks
    // hundreds of thousands of names).
    let plain =
        |b: &u8| b.is_ascii_graphic() && !matches!(b, b'-' | b'/' | b'<' | b'>' | b'=' | b'!');
    if name.as_bytes().iter().all(plain) {
        return Ok(());
    }
    if let Some(c) = name.chars().find(|c| {
        c.is_whitespace() || c.is_control() || matches!(c, '-' | '/' | '<' | '>' | '=' | '!')
    }) {
        return Err(format!(
            "name {name:?} contains the forbidden character {c:?}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolvable_parse() {
        let r = Resolvable::parse("lib:libfoo >= 2.0").unwrap();
        assert_eq!(r.to_string(), "lib:libfoo>=2.0");
        assert_eq!(
            Resolvable::parse("haiku>r1~beta4").unwrap().to_string(),
            "haiku>r1~beta4"
        );
        assert_eq!(Resolvable::parse("cmd:bar").unwrap().constraint, None);
        assert!(Resolvable::parse("a b").is_err());
        assert!(Resolvable::parse("a => 1").is_err());
    }
}
