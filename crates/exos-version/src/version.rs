//! Haiku's version grammar and order (spec §1.13, §1.14).

use std::fmt;

/// A Haiku version: `major[.minor[.micro]][~pre_release][-revision]`.
/// Serialized as its text form (`1.2.3~beta1-4`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Version {
    /// The major component (may hold letters: `r1`).
    pub major: String,
    /// The minor component; empty when absent.
    pub minor: String,
    /// The micro component (may hold more dots); empty when absent.
    pub micro: String,
    /// The pre-release (`beta1` in `1.0~beta1`); sorts before the release.
    pub pre_release: String,
    /// The package revision (`-4`); 0 when absent.
    pub revision: u32,
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A version's components borrowed from its text: checked against the
/// grammar but neither copied nor lower-cased (the order ignores case).
/// Index loaders check thousands of versions this way without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRef<'a> {
    /// The major component.
    pub major: &'a str,
    /// The minor component; empty when absent.
    pub minor: &'a str,
    /// The micro component; empty when absent.
    pub micro: &'a str,
    /// The pre-release; empty when absent.
    pub pre_release: &'a str,
    /// The package revision; 0 when absent.
    pub revision: u32,
}

impl<'a> VersionRef<'a> {
    /// Parses Haiku's textual version grammar (§1.13): revision after the
    /// last `-`, pre-release after the last `~`, then `.`-separated parts.
    pub fn parse(s: &'a str) -> std::result::Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty version".into());
        }
        let (rest, revision) = match s.rfind('-') {
            Some(i) => {
                let r = &s[i + 1..];
                let rev: u32 = r
                    .parse()
                    .map_err(|_| format!("bad revision {r:?} in version {s:?}"))?;
                (&s[..i], rev)
            }
            None => (s, 0),
        };
        let (rest, pre_release) = match rest.rfind('~') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let mut parts = rest.splitn(3, '.');
        let major = parts.next().unwrap_or_default();
        let minor = parts.next().unwrap_or_default();
        let micro = parts.next().unwrap_or_default();
        let ok_part = |p: &str, dots: bool| {
            p.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || (dots && c == b'.'))
        };
        if major.is_empty() || !ok_part(major, false) || !ok_part(minor, false) {
            return Err(format!("invalid version {s:?}"));
        }
        if !ok_part(micro, true) || !ok_part(pre_release, true) {
            return Err(format!("invalid version {s:?}"));
        }
        if minor.is_empty() && rest.contains('.') {
            return Err(format!("invalid version {s:?}"));
        }
        Ok(VersionRef {
            major,
            minor,
            micro,
            pre_release,
            revision,
        })
    }

    /// The owned version; the Package Kit lower-cases every component.
    pub fn to_version(&self) -> Version {
        Version {
            major: self.major.to_ascii_lowercase(),
            minor: self.minor.to_ascii_lowercase(),
            micro: self.micro.to_ascii_lowercase(),
            pre_release: self.pre_release.to_ascii_lowercase(),
            revision: self.revision,
        }
    }

    /// Haiku's ordering (`BPackageVersion::Compare`, spec §1.14): major,
    /// minor and micro by natural compare; no pre-release beats any
    /// pre-release; then revision.
    pub fn compare(&self, other: &VersionRef) -> std::cmp::Ordering {
        use std::cmp::Ordering::*;
        natural_compare(self.major, other.major)
            .then_with(|| natural_compare(self.minor, other.minor))
            .then_with(|| natural_compare(self.micro, other.micro))
            .then_with(
                || match (self.pre_release.is_empty(), other.pre_release.is_empty()) {
                    (true, true) => Equal,
                    (true, false) => Greater,
                    (false, true) => Less,
                    (false, false) => natural_compare(self.pre_release, other.pre_release),
                },
            )
            .then_with(|| self.revision.cmp(&other.revision))
    }
}

impl Version {
    /// Parses Haiku's textual version grammar (see [`VersionRef::parse`]).
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        VersionRef::parse(s).map(|v| v.to_version())
    }

    /// The components, borrowed.
    pub fn parts(&self) -> VersionRef<'_> {
        VersionRef {
            major: &self.major,
            minor: &self.minor,
            micro: &self.micro,
            pre_release: &self.pre_release,
            revision: self.revision,
        }
    }

    /// Haiku's ordering (`BPackageVersion::Compare`, spec §1.14). Not
    /// `Ord`: `1.01` and `1.1` compare equal but are different values.
    pub fn compare(&self, other: &Version) -> std::cmp::Ordering {
        self.parts().compare(&other.parts())
    }
}

/// Natural string order as in spec §1.14: digit runs by numeric value, text
/// runs case-insensitively; an empty string is smaller than any other.
pub fn natural_compare(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        a = a.trim_ascii_start();
        b = b.trim_ascii_start();
        let (Some(&ca), Some(&cb)) = (a.first(), b.first()) else {
            return a.len().cmp(&b.len());
        };
        match (ca.is_ascii_digit(), cb.is_ascii_digit()) {
            (true, true) => {
                let (ra, rest_a) = split_run(a, true);
                let (rb, rest_b) = split_run(b, true);
                let strip = |r: &[u8]| -> usize { r.iter().take_while(|&&c| c == b'0').count() };
                let (na, nb) = (&ra[strip(ra)..], &rb[strip(rb)..]);
                let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
                if ord != Equal {
                    return ord;
                }
                (a, b) = (rest_a, rest_b);
            }
            (false, false) => {
                let (ra, rest_a) = split_run(a, false);
                let (rb, rest_b) = split_run(b, false);
                let ord = cmp_ignore_case(ra, rb);
                if ord != Equal {
                    return ord;
                }
                (a, b) = (rest_a, rest_b);
            }
            _ => return cmp_ignore_case(a, b),
        }
    }
}

fn split_run(s: &[u8], digits: bool) -> (&[u8], &[u8]) {
    let n = s
        .iter()
        .position(|c| c.is_ascii_digit() != digits || (!digits && c.is_ascii_whitespace()))
        .unwrap_or(s.len());
    s.split_at(n)
}

fn cmp_ignore_case(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    a.iter()
        .map(u8::to_ascii_lowercase)
        .cmp(b.iter().map(u8::to_ascii_lowercase))
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.major)?;
        if !self.minor.is_empty() {
            write!(f, ".{}", self.minor)?;
            if !self.micro.is_empty() {
                write!(f, ".{}", self.micro)?;
            }
        }
        if !self.pre_release.is_empty() {
            write!(f, "~{}", self.pre_release)?;
        }
        if self.revision != 0 {
            write!(f, "-{}", self.revision)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, b: &str) -> std::cmp::Ordering {
        Version::parse(a)
            .unwrap()
            .compare(&Version::parse(b).unwrap())
    }

    #[test]
    fn version_ordering_follows_haiku() {
        use std::cmp::Ordering::*;
        for (a, b, want) in [
            ("1.10", "1.9", Greater),
            ("1.0", "1.0~beta1", Greater),
            ("r1", "r1~beta4", Greater),
            ("1.0~alpha2", "1.0~alpha10", Less),
            ("R1", "r1", Equal),
            ("1.01", "1.1", Equal),
            ("1", "1.0", Less),
            ("1.0-2", "1.0-10", Less),
            ("2", "10", Less),
            ("1.2.3", "1.2.3a", Less),
            ("1.2a", "1.2b", Less),
            ("1.a", "1.1", Greater),
        ] {
            assert_eq!(cmp(a, b), want, "{a} vs {b}");
            assert_eq!(cmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    fn version_strategy() -> impl proptest::strategy::Strategy<Value = Version> {
        use proptest::prelude::*;
        let part = "[0-9]{1,3}|[a-c]{1,2}[0-9]?|[0-9][a-b]";
        (
            part,
            proptest::option::of(part),
            proptest::option::of(part),
            proptest::option::of("(alpha|beta|rc)[0-9]{0,2}"),
            0u32..4,
        )
            .prop_map(|(ma, mi, mc, pre, rev)| {
                let mut s = ma;
                if let Some(mi) = mi {
                    s += &format!(".{mi}");
                    if let Some(mc) = mc {
                        s += &format!(".{mc}");
                    }
                }
                if let Some(p) = pre {
                    s += &format!("~{p}");
                }
                if rev > 0 {
                    s += &format!("-{rev}");
                }
                Version::parse(&s).unwrap()
            })
    }

    proptest::proptest! {
        #[test]
        fn version_order_is_a_total_order(
            a in version_strategy(), b in version_strategy(), c in version_strategy()
        ) {
            use std::cmp::Ordering::*;
            proptest::prop_assert_eq!(a.compare(&a), Equal);
            proptest::prop_assert_eq!(a.compare(&b), b.compare(&a).reverse());
            if a.compare(&b) != Greater && b.compare(&c) != Greater {
                proptest::prop_assert_ne!(a.compare(&c), Greater, "{} {} {}", a, b, c);
            }
            // Display and parse preserve the order.
            let a2 = Version::parse(&a.to_string()).unwrap();
            proptest::prop_assert_eq!(a2.compare(&b), a.compare(&b));
        }

        #[test]
        fn later_revision_and_release_are_newer(a in version_strategy()) {
            use std::cmp::Ordering::*;
            let mut next = a.clone();
            next.revision += 1;
            proptest::prop_assert_eq!(next.compare(&a), Greater);
            if !a.pre_release.is_empty() {
                let mut release = a.clone();
                release.pre_release.clear();
                proptest::prop_assert_eq!(release.compare(&a), Greater);
            }
        }
    }

    #[test]
    fn version_parse_display() {
        for s in [
            "1",
            "1.2",
            "1.2.3",
            "1.2.3~beta1-4",
            "r1~beta4",
            "1.2.3.4-2",
            "r1~beta1_hrev52295_129-1",
        ] {
            assert_eq!(Version::parse(s).unwrap().to_string(), s);
        }
        let v = Version::parse("1.2.3.4~rc.1-7").unwrap();
        assert_eq!(
            (v.major.as_str(), v.minor.as_str(), v.micro.as_str()),
            ("1", "2", "3.4")
        );
        assert_eq!((v.pre_release.as_str(), v.revision), ("rc.1", 7));
        assert!(Version::parse("").is_err());
        assert!(Version::parse("1-x").is_err());
        assert!(Version::parse("a b").is_err());
    }
}
