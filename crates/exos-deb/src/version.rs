//! dpkg's version order, and its exact mapping onto Haiku versions.
//!
//! A Debian version `[epoch:]upstream[-revision]` becomes the Haiku version
//! `EPOCH.ENC(upstream).ENC(revision)`, where ENC keeps digit runs and
//! writes every other character as letters chosen so that Haiku's natural
//! comparison of the result orders exactly as dpkg orders the original:
//! `~` → `a` (before the end of a part), end of a part → `b`, a letter →
//! `c` + two letters (its rank among `A`…`Z` `a`…`z`), any other
//! character → `d` + two letters (its code). Each non-digit part ends with
//! `b`, and the string with one more `b`, so a shorter version is compared
//! as dpkg compares it (`1~` < `1` < `1.0`). The original stays visible in
//! the manifest's `original_version`.

use std::cmp::Ordering;

use exos_hpkg::info::Version;

/// A parsed Debian version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebVersion {
    /// The epoch (`1:` in `1:2.3-4`; 0 when absent).
    pub epoch: u32,
    /// The upstream version (`2.3`).
    pub upstream: String,
    /// The Debian revision (`4`; empty when absent).
    pub revision: String,
}

impl DebVersion {
    /// Parses `[epoch:]upstream[-revision]` by Debian policy 5.6.12.
    pub fn parse(s: &str) -> Result<DebVersion, String> {
        let s = s.trim();
        if s.is_empty() || s.len() > 256 {
            return Err(format!("version {s:?}: empty or longer than 256 bytes"));
        }
        let (epoch, rest) = match s.split_once(':') {
            Some((e, rest)) => (
                e.parse::<u32>()
                    .map_err(|_| format!("version {s:?}: epoch {e:?} is not a number"))?,
                rest,
            ),
            None => (0, s),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((u, r)) => (u, r),
            None => (rest, ""),
        };
        let ok_up = |c: char| c.is_ascii_alphanumeric() || ".+~-:".contains(c);
        let ok_rev = |c: char| c.is_ascii_alphanumeric() || ".+~".contains(c);
        if upstream.is_empty()
            || !upstream.starts_with(|c: char| c.is_ascii_digit())
            || !upstream.chars().all(ok_up)
            || !revision.chars().all(ok_rev)
            || (rest.contains('-') && revision.is_empty())
        {
            return Err(format!(
                "version {s:?}: not a Debian version ([epoch:]upstream[-revision], upstream starting with a digit)"
            ));
        }
        Ok(DebVersion {
            epoch,
            upstream: upstream.into(),
            revision: revision.into(),
        })
    }

    /// The Haiku version that orders as this one does among Debian versions.
    pub fn to_haiku(&self) -> Version {
        Version {
            major: self.epoch.to_string(),
            minor: encode(&self.upstream),
            micro: encode(&self.revision),
            pre_release: String::new(),
            revision: 0,
        }
    }

    /// dpkg's comparison (`dpkg --compare-versions`).
    pub fn compare(&self, other: &DebVersion) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| compare_part(&self.upstream, &other.upstream))
            .then_with(|| compare_part(&self.revision, &other.revision))
    }
}

impl std::fmt::Display for DebVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.epoch != 0 {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.upstream)?;
        if !self.revision.is_empty() {
            write!(f, "-{}", self.revision)?;
        }
        Ok(())
    }
}

fn pair(n: u32, out: &mut String) {
    out.push(char::from(b'a' + (n / 26) as u8));
    out.push(char::from(b'a' + (n % 26) as u8));
}

/// See the module docs. Every non-digit run (empty ones too) is written
/// with its terminator `b`; the result always ends with a digit run and a
/// final `b`, since dpkg reads a missing digit run as 0 (`1.` = `1.0`).
fn encode(part: &str) -> String {
    let b = part.as_bytes();
    let mut out = String::with_capacity(b.len() * 3 + 4);
    let mut i = 0;
    loop {
        while i < b.len() && !b[i].is_ascii_digit() {
            match b[i] {
                b'~' => out.push('a'),
                c @ b'A'..=b'Z' => {
                    out.push('c');
                    pair(u32::from(c - b'A'), &mut out);
                }
                c @ b'a'..=b'z' => {
                    out.push('c');
                    pair(26 + u32::from(c - b'a'), &mut out);
                }
                c => {
                    out.push('d');
                    pair(u32::from(c), &mut out);
                }
            }
            i += 1;
        }
        out.push('b');
        let digits_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            out.push(char::from(b[i]));
            i += 1;
        }
        if i >= b.len() {
            if digits_start == i {
                out.push('0');
            }
            out.push('b');
            return out;
        }
    }
}

/// Order of a character in dpkg's non-digit comparison.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`.
fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        loop {
            let (ca, cb) = (a.first().copied(), b.first().copied());
            let da = ca.is_none_or(|c| c.is_ascii_digit());
            let db = cb.is_none_or(|c| c.is_ascii_digit());
            if da && db {
                break;
            }
            let (oa, ob) = (
                if da { 0 } else { order(ca) },
                if db { 0 } else { order(cb) },
            );
            if oa != ob {
                return oa.cmp(&ob);
            }
            if !da {
                a = &a[1..];
            }
            if !db {
                b = &b[1..];
            }
        }
        let za = a.iter().take_while(|c| **c == b'0').count();
        let zb = b.iter().take_while(|c| **c == b'0').count();
        (a, b) = (&a[za..], &b[zb..]);
        let na = a.iter().take_while(|c| c.is_ascii_digit()).count();
        let nb = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let ord = na.cmp(&nb).then_with(|| a[..na].cmp(&b[..nb]));
        if ord != Ordering::Equal {
            return ord;
        }
        (a, b) = (&a[na..], &b[nb..]);
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn haiku_cmp(a: &str, b: &str) -> Ordering {
        let (a, b) = (DebVersion::parse(a).unwrap(), DebVersion::parse(b).unwrap());
        let (ha, hb) = (a.to_haiku(), b.to_haiku());
        // The mapped versions must be valid Haiku versions.
        let ha = Version::parse(&ha.to_string()).unwrap();
        let hb = Version::parse(&hb.to_string()).unwrap();
        ha.compare(&hb)
    }

    #[test]
    fn known_debian_orders() {
        // From dpkg's own test suite and Debian policy.
        let ordered = [
            "0:0~~", "0~", "0", "0a", "0.0", "1~rc1", "1", "1-1", "1.0~beta", "1.0", "1.0-0.1",
            "1.0-1", "1.0-1+b1", "1.0-1.1", "1.0a", "1.0+dfsg", "1.0.1", "1.2", "1.10", "2:0.1",
            "2:9.1-1",
        ];
        for pair in ordered.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let (da, db) = (DebVersion::parse(a).unwrap(), DebVersion::parse(b).unwrap());
            assert_eq!(da.compare(&db), Ordering::Less, "dpkg: {a} < {b}");
            assert_eq!(haiku_cmp(a, b), Ordering::Less, "haiku: {a} < {b}");
            assert_eq!(haiku_cmp(b, a), Ordering::Greater, "haiku: {b} > {a}");
        }
        assert_eq!(haiku_cmp("1.0-01", "1.0-1"), Ordering::Equal);
        assert_eq!(DebVersion::parse("2:9.1-1").unwrap().to_string(), "2:9.1-1");
    }

    #[test]
    fn refuses_what_is_not_a_version() {
        for bad in ["", "a1", "1:", "x:1", "1-", "1_0", "1 0", "1-a_b"] {
            assert!(DebVersion::parse(bad).is_err(), "{bad:?}");
        }
    }

    fn version() -> impl Strategy<Value = String> {
        (
            0u32..3,
            "[0-9][0-9a-zA-Z.+~]{0,8}",
            proptest::option::of("[0-9a-zA-Z.+~]{1,5}"),
        )
            .prop_map(|(e, u, r)| {
                let mut s = String::new();
                if e > 0 {
                    s.push_str(&format!("{e}:"));
                }
                s.push_str(&u);
                if let Some(r) = r {
                    s.push('-');
                    s.push_str(&r);
                }
                s
            })
    }

    proptest! {
        #[test]
        fn the_mapping_orders_exactly_as_dpkg(a in version(), b in version()) {
            let (da, db) = (DebVersion::parse(&a).unwrap(), DebVersion::parse(&b).unwrap());
            prop_assert_eq!(haiku_cmp(&a, &b), da.compare(&db), "{} vs {}", a, b);
        }
    }
}
