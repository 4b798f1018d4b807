//! "Did you mean": names close to one that matches nothing.

/// Up to three names of `known` close to `name` (a typo or two away,
/// Jaro–Winkler ≥ 0.85, or one containing the other; `-` and `_` taken as
/// the same, since Debian names are stored with `_`), best first.
pub fn close_names<'a>(name: &str, known: &'a [String]) -> Vec<&'a str> {
    let norm = |s: &str| s.to_lowercase().replace('-', "_");
    let wanted = norm(name);
    let mut scored: Vec<(f64, &str)> = known
        .iter()
        .map(|k| {
            let k_norm = norm(k);
            let mut score = strsim::jaro_winkler(&wanted, &k_norm);
            if wanted.len() >= 3 && (k_norm.contains(&wanted) || wanted.contains(&k_norm)) {
                score = score.max(0.85);
            }
            // A typo or two, however short the name.
            let edits = strsim::damerau_levenshtein(&wanted, &k_norm);
            if edits <= 1.max(wanted.chars().count() / 4) {
                score = score.max(0.9);
            }
            (score, k.as_str())
        })
        .filter(|(score, _)| *score >= 0.85)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(3).map(|(_, k)| k).collect()
}

/// "no package named X" — with the close names, if any.
pub fn unknown_package(name: &str, known: &[String]) -> String {
    let close = close_names(name, known);
    if close.is_empty() {
        format!("no package named {name}")
    } else {
        format!(
            "no package named {name}; did you mean {}?",
            close.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_found_and_far_ones_are_not() {
        let known: Vec<String> = ["hello", "greeter", "systemd_sysv", "libfoo"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(close_names("helo", &known), ["hello"]);
        assert_eq!(close_names("systemd-sysv", &known), ["systemd_sysv"]);
        assert!(close_names("zzz", &known).is_empty());
        assert_eq!(
            unknown_package("greter", &known),
            "no package named greter; did you mean greeter?"
        );
        assert_eq!(unknown_package("qqqq", &known), "no package named qqqq");
    }
}
