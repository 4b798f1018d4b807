//! Version ranges: `>=1.0`, `<2`, `~2.1`, `^1.4`, `!=1.3`, `=1.0-2`, and
//! comma-separated intersections such as `>=1.0, <2`.
//!
//! Versions are Haiku's (`major.minor.micro~pre-rev`) and are ordered by
//! [`Version::compare`]. A provider may declare a compatibility window
//! (`provides libfoo = 1.5 compat >= 1.0`); matching follows libsolv's Haiku
//! rules, which decide installs on real Haiku systems: lower bounds (`>=`,
//! `>`, `~`, `^`) must also lie inside the window, every other operator looks
//! at the provided version only, and an unversioned provider satisfies any
//! range.

use std::cmp::Ordering;
use std::fmt;

use exos_version::{natural_compare, Operator, Resolvable, Version, VersionRef};

/// The operator of one [`Constraint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RangeOp {
    /// `=V`: exactly V.
    Eq,
    /// `!=V`: anything but V.
    Ne,
    /// `<V`
    Lt,
    /// `<=V`
    Le,
    /// `>V`
    Gt,
    /// `>=V`
    Ge,
    /// `~V`: at least V, same major and (when V names one) same minor.
    Tilde,
    /// `^V`: at least V, same major.
    Caret,
}

impl RangeOp {
    /// The operator as written in a range (`>=`, `~`).
    pub fn symbol(self) -> &'static str {
        match self {
            RangeOp::Eq => "=",
            RangeOp::Ne => "!=",
            RangeOp::Lt => "<",
            RangeOp::Le => "<=",
            RangeOp::Gt => ">",
            RangeOp::Ge => ">=",
            RangeOp::Tilde => "~",
            RangeOp::Caret => "^",
        }
    }

    fn is_lower_bound(self) -> bool {
        matches!(
            self,
            RangeOp::Ge | RangeOp::Gt | RangeOp::Tilde | RangeOp::Caret
        )
    }
}

/// One `OP VERSION` term of a range.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Constraint {
    /// The comparison.
    pub op: RangeOp,
    /// The version compared with.
    pub version: Version,
}

impl Constraint {
    /// Does the version `provided` (with optional compatibility floor
    /// `compatible`) satisfy this term?
    pub fn matches(&self, provided: &Version, compatible: Option<&Version>) -> bool {
        let ord = provided.compare(&self.version);
        let in_window = || compatible.is_none_or(|c| c.compare(&self.version) != Ordering::Greater);
        match self.op {
            RangeOp::Eq => ord == Ordering::Equal,
            RangeOp::Ne => ord != Ordering::Equal,
            RangeOp::Lt => ord == Ordering::Less,
            RangeOp::Le => ord != Ordering::Greater,
            RangeOp::Gt => ord == Ordering::Greater && in_window(),
            RangeOp::Ge => ord != Ordering::Less && in_window(),
            RangeOp::Tilde => {
                ord != Ordering::Less
                    && in_window()
                    && natural_compare(&provided.major, &self.version.major).is_eq()
                    && (self.version.minor.is_empty()
                        || natural_compare(&provided.minor, &self.version.minor).is_eq())
            }
            RangeOp::Caret => {
                ord != Ordering::Less
                    && in_window()
                    && natural_compare(&provided.major, &self.version.major).is_eq()
            }
        }
    }

    /// The same term in Haiku's requirement vocabulary (one operator per
    /// entry): `~`/`^` become a lower and, when the bumped component is
    /// numeric, an upper bound.
    pub fn to_haiku(&self) -> Vec<(Operator, Version)> {
        let v = self.version.clone();
        let simple = |op| vec![(op, v.clone())];
        match self.op {
            RangeOp::Eq => simple(Operator::Equal),
            RangeOp::Ne => simple(Operator::NotEqual),
            RangeOp::Lt => simple(Operator::Less),
            RangeOp::Le => simple(Operator::LessEqual),
            RangeOp::Gt => simple(Operator::Greater),
            RangeOp::Ge => simple(Operator::GreaterEqual),
            RangeOp::Tilde | RangeOp::Caret => {
                let mut out = simple(Operator::GreaterEqual);
                let bump = |s: &str| s.parse::<u64>().ok().map(|n| (n + 1).to_string());
                let upper = if self.op == RangeOp::Tilde && !v.minor.is_empty() {
                    bump(&v.minor).map(|minor| Version {
                        major: v.major.clone(),
                        minor,
                        ..Default::default()
                    })
                } else {
                    bump(&v.major).map(|major| Version {
                        major,
                        ..Default::default()
                    })
                };
                if let Some(u) = upper {
                    out.push((Operator::Less, u));
                }
                out
            }
        }
    }

    /// The constraint a Haiku requirement's operator and version make.
    pub fn from_haiku(op: Operator, version: Version) -> Constraint {
        let op = match op {
            Operator::Less => RangeOp::Lt,
            Operator::LessEqual => RangeOp::Le,
            Operator::Equal => RangeOp::Eq,
            Operator::NotEqual => RangeOp::Ne,
            Operator::GreaterEqual => RangeOp::Ge,
            Operator::Greater => RangeOp::Gt,
        };
        Constraint { op, version }
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.op.symbol(), self.version)
    }
}

/// An intersection of constraints; empty means "any version".
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct VersionRange {
    /// The terms, all of which must hold.
    pub constraints: Vec<Constraint>,
}

impl VersionRange {
    /// The range every version is in.
    pub fn any() -> Self {
        Self::default()
    }

    /// Whether every version is in it.
    pub fn is_any(&self) -> bool {
        self.constraints.is_empty()
    }

    /// Parses `>=1.0, <2`, `~2.1`, `1.0` (same as `=1.0`), `*` or the empty
    /// string (any version).
    pub fn parse(s: &str) -> Result<VersionRange, String> {
        let mut constraints = Vec::new();
        for_each_term(s, |op, version| {
            constraints.push(Constraint {
                op,
                version: version.to_version(),
            })
        })?;
        Ok(VersionRange { constraints })
    }

    /// Checks `s` against the grammar of [`VersionRange::parse`] without
    /// building the range (no allocation unless it is wrong).
    pub fn check(s: &str) -> Result<(), String> {
        for_each_term(s, |_, _| {})
    }

    /// Whether a provider of version `provided` (compatible back to `compatible`) satisfies the range; an unversioned provider satisfies any.
    pub fn matches(&self, provided: Option<&Version>, compatible: Option<&Version>) -> bool {
        match provided {
            // libsolv (RPM-like): an unversioned provider satisfies any range.
            None => true,
            Some(p) => self.constraints.iter().all(|c| c.matches(p, compatible)),
        }
    }

    /// Whether some term bounds the version from below (and so is checked
    /// against a provider's compatibility window).
    pub fn has_lower_bound(&self) -> bool {
        self.constraints.iter().any(|c| c.op.is_lower_bound())
    }

    /// The range as Haiku requirement entries for `name`; one entry per
    /// operator (Haiku's requirements are intersected the same way).
    pub fn to_haiku(&self, name: &str) -> Vec<Resolvable> {
        if self.is_any() {
            return vec![Resolvable {
                name: name.to_string(),
                constraint: None,
            }];
        }
        self.constraints
            .iter()
            .flat_map(Constraint::to_haiku)
            .map(|c| Resolvable {
                name: name.to_string(),
                constraint: Some(c),
            })
            .collect()
    }
}

/// Splits a range into its terms, checking each, and calls `f` with every
/// operator and version: the one grammar of ranges.
fn for_each_term<'a>(s: &'a str, mut f: impl FnMut(RangeOp, VersionRef<'a>)) -> Result<(), String> {
    let s = s.trim();
    if s.is_empty() || s == "*" {
        return Ok(());
    }
    for term in s.split(',') {
        let term = term.trim();
        if term.is_empty() {
            return Err(format!("empty term in version range {s:?}"));
        }
        const OPS: [(&str, RangeOp); 9] = [
            ("==", RangeOp::Eq),
            ("!=", RangeOp::Ne),
            ("<=", RangeOp::Le),
            (">=", RangeOp::Ge),
            ("<", RangeOp::Lt),
            (">", RangeOp::Gt),
            ("=", RangeOp::Eq),
            ("~", RangeOp::Tilde),
            ("^", RangeOp::Caret),
        ];
        let (op, rest) = OPS
            .iter()
            .find_map(|(sym, op)| term.strip_prefix(sym).map(|rest| (*op, rest)))
            .unwrap_or((RangeOp::Eq, term));
        if rest
            .trim_start()
            .starts_with(['<', '>', '=', '!', '~', '^'])
        {
            return Err(format!("unknown operator in version range term {term:?}"));
        }
        let version =
            VersionRef::parse(rest).map_err(|e| format!("{e} in version range term {term:?}"))?;
        f(op, version);
    }
    Ok(())
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_any() {
            return f.write_str("*");
        }
        for (i, c) in self.constraints.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn m(range: &str, provided: &str) -> bool {
        VersionRange::parse(range)
            .unwrap()
            .matches(Some(&v(provided)), None)
    }

    #[test]
    fn operators() {
        assert!(m(">=1.0", "1.0") && m(">=1.0", "1.10") && !m(">=1.0", "0.9"));
        assert!(m(">1.0", "1.0.1") && !m(">1.0", "1.0"));
        assert!(m("<2", "1.99") && !m("<2", "2") && m("<=2", "2"));
        assert!(m("=1.0", "1.0") && !m("=1.0", "1.0-1") && m("1.0", "1.0"));
        assert!(m("!=1.3", "1.4") && !m("!=1.3", "1.3"));
        assert!(m("~2.1", "2.1") && m("~2.1", "2.1.9") && !m("~2.1", "2.2") && !m("~2.1", "2.0"));
        assert!(m("^1.4", "1.9") && !m("^1.4", "2.0") && !m("^1.4", "1.3"));
        assert!(m(">=1.0, <2", "1.5") && !m(">=1.0, <2", "2.0") && !m(">=1.0, <2", "0.5"));
        assert!(m("*", "0.1") && m("", "7"));
        assert!(!m(">=1.0", "1.0~beta1"));
    }

    #[test]
    fn compatibility_window_bounds_lower_bounds_only() {
        let r = |s: &str| VersionRange::parse(s).unwrap();
        let (p, c) = (v("1.5"), v("1.2"));
        assert!(r(">=1.2").matches(Some(&p), Some(&c)));
        assert!(r(">=1.4").matches(Some(&p), Some(&c)));
        assert!(
            !r(">=1.0").matches(Some(&p), Some(&c)),
            "1.0 is below the window"
        );
        assert!(!r("^1.0").matches(Some(&p), Some(&c)));
        assert!(r("<2").matches(Some(&p), Some(&c)));
        // Without a window, `>=` accepts any newer provider (libsolv rule).
        assert!(r(">=1.0").matches(Some(&p), None));
        // Unversioned providers satisfy every range.
        assert!(r(">=9").matches(None, None));
    }

    #[test]
    fn parse_and_display() {
        for (input, shown) in [
            (">= 1.0 ,< 2", ">=1.0, <2"),
            ("~2.1", "~2.1"),
            ("==1.0-2", "=1.0-2"),
            ("1.0~beta1", "=1.0~beta1"),
            ("*", "*"),
        ] {
            let r = VersionRange::parse(input).unwrap();
            assert_eq!(r.to_string(), shown);
            assert_eq!(VersionRange::parse(shown).unwrap(), r);
        }
        for bad in [">=", ">=1.0,", "=>1.0", ">>1", "1.0 2", ">=1..2", "~"] {
            assert!(VersionRange::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn haiku_mapping_of_tilde_and_caret() {
        let r = VersionRange::parse("~2.1").unwrap().to_haiku("x");
        let shown: Vec<String> = r.iter().map(|r| r.to_string()).collect();
        assert_eq!(shown, ["x>=2.1", "x<2.2"]);
        let r = VersionRange::parse("^1.4").unwrap().to_haiku("x");
        let shown: Vec<String> = r.iter().map(|r| r.to_string()).collect();
        assert_eq!(shown, ["x>=1.4", "x<2"]);
        // The one thing Haiku's single operators cannot say: "below every
        // pre-release of 2". `^1.4` refuses 2~beta1; its rendering admits it.
        let caret = VersionRange::parse("^1.4").unwrap();
        assert!(!caret.matches(Some(&v("2~beta1")), None));
        assert!(v("2~beta1").compare(&v("2")).is_lt());
    }

    proptest::proptest! {
        /// A range and its Haiku rendering agree for every provided version
        /// (no compatibility window) — except pre-releases of the bumped
        /// bound of `~`/`^` (see `haiku_mapping_of_tilde_and_caret`).
        #[test]
        fn haiku_mapping_agrees(
            op in 0usize..8,
            base in "[0-9]{1,2}(\\.[0-9]{1,2}){0,2}",
            probe in "[0-9]{1,2}(\\.[0-9]{1,2}){0,2}(~beta[0-9])?",
        ) {
            let ops = ["=", "!=", "<", "<=", ">", ">=", "~", "^"];
            let range = VersionRange::parse(&format!("{}{}", ops[op], base)).unwrap();
            let p = v(&probe);
            let ours = range.matches(Some(&p), None);
            let haiku = range.to_haiku("x");
            let theirs = haiku.iter().all(|r| match &r.constraint {
                None => true,
                Some((op, ver)) => Constraint::from_haiku(*op, ver.clone()).matches(&p, None),
            });
            let at_bumped_bound = op >= 6
                && !p.pre_release.is_empty()
                && haiku.iter().any(|r| matches!(&r.constraint, Some((Operator::Less, ub))
                    if natural_compare(&ub.major, &p.major).is_eq()
                        && (ub.minor.is_empty() || natural_compare(&ub.minor, &p.minor).is_eq())));
            if !at_bumped_bound {
                proptest::prop_assert_eq!(ours, theirs, "{} vs {}", range, p);
            }
        }
    }
}
