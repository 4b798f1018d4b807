//! `system/state/boot.json`: how each state booted — the boot counting of
//! `exos boot` (systemd's boot assessment, per numbered state).
//!
//! A boot of state N counts a try before it starts; reaching
//! `boot-complete.target` marks N good. A state tried [`BootRecord::choose`]'s
//! `max_tries` times without ever booting well is passed over for the
//! state that booted well most recently.
//!
//! ```json
//! {"states": {"3": {"tries": 0, "good": true, "last_try": 1765080000, "last_good": 1765080000}}}
//! ```
//!
//! One parser ([`BootRecord::parse`]), bounded (1 MiB, 100,000 states),
//! unknown fields refused; written atomically.

use std::collections::BTreeMap;
use std::path::Path;

use crate::StateError;

/// Larger files are refused before parsing.
pub const MAX_FILE: u64 = 1 << 20;
/// At most this many states are remembered.
pub const MAX_STATES: usize = 100_000;
/// Tries without a good boot before a state is passed over, unless told.
pub const DEFAULT_MAX_TRIES: u32 = 3;

/// How one state booted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootOutcome {
    /// Boots started since it last booted well (all of them if it never
    /// did).
    pub tries: u32,
    /// Whether it ever reached `boot-complete.target`.
    pub good: bool,
    /// When it was last started (seconds since the epoch).
    pub last_try: u64,
    /// When the last boot that went well started (seconds since the epoch;
    /// 0: never, or before this was recorded).
    #[serde(default)]
    pub last_good: u64,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootRecord {
    /// By state number.
    #[serde(default)]
    pub states: BTreeMap<u64, BootOutcome>,
}

/// The state a boot uses, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BootChoice {
    /// The state to boot.
    pub state: u64,
    /// The state asked for (or current) when it was passed over: it failed
    /// this many boots in a row and never booted well.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passed_over: Option<PassedOver>,
}

/// A state passed over by [`BootRecord::choose`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PassedOver {
    /// The state.
    pub state: u64,
    /// Its failed tries.
    pub tries: u32,
}

impl BootRecord {
    /// Parses the file's bytes; `path` names it in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<BootRecord, StateError> {
        let err = |message: String| StateError {
            path: path.to_path_buf(),
            line: None,
            message,
        };
        if bytes.len() as u64 > MAX_FILE {
            return Err(err(format!(
                "{} bytes, more than the {MAX_FILE} allowed",
                bytes.len()
            )));
        }
        let record: BootRecord =
            serde_json::from_slice(bytes).map_err(|e| err(format!("not a boot record: {e}")))?;
        if record.states.len() > MAX_STATES {
            return Err(err(format!(
                "{} states, more than the {MAX_STATES} allowed",
                record.states.len()
            )));
        }
        Ok(record)
    }

    /// Reads `path`; a missing file is an empty record.
    pub fn read(path: &Path) -> Result<BootRecord, StateError> {
        match crate::read_state_file(path, MAX_FILE)? {
            Some(bytes) => BootRecord::parse(&bytes, path),
            None => Ok(BootRecord::default()),
        }
    }

    /// The file's bytes, as written.
    pub fn render(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Writes it to `path` atomically.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        crate::write_atomically(path, &self.render())
    }

    /// The state to boot when `wanted` is asked for (or is current):
    /// `wanted` itself unless it failed `max_tries` boots and never booted
    /// well, then the one of `states` that booted well most recently (the
    /// system as it last worked, as greenboot goes back to the deployment
    /// booted before: not a state rolled back from because it was newer;
    /// of equal times the newest) — none: `wanted` all the same. An
    /// explicit choice is the caller's to honour: it is not passed through
    /// here.
    pub fn choose(&self, wanted: u64, states: &[u64], max_tries: u32) -> BootChoice {
        let outcome = self.states.get(&wanted).copied().unwrap_or_default();
        if outcome.good || outcome.tries < max_tries.max(1) {
            return BootChoice {
                state: wanted,
                passed_over: None,
            };
        }
        let fallback = states
            .iter()
            .copied()
            .filter_map(|s| {
                let o = self.states.get(&s).filter(|o| o.good && s != wanted)?;
                Some((o.last_good, s))
            })
            .max()
            .map(|(_, s)| s);
        match fallback {
            Some(state) => BootChoice {
                state,
                passed_over: Some(PassedOver {
                    state: wanted,
                    tries: outcome.tries,
                }),
            },
            None => BootChoice {
                state: wanted,
                passed_over: None,
            },
        }
    }

    /// Counts a try of `state`, started at `now`.
    pub fn tried(&mut self, state: u64, now: u64) {
        let o = self.states.entry(state).or_default();
        o.tries = o.tries.saturating_add(1);
        o.last_try = now;
    }

    /// Marks `state` as having booted well: its failed tries start over.
    pub fn booted_well(&mut self, state: u64) {
        let o = self.states.entry(state).or_default();
        o.good = true;
        o.tries = 0;
        o.last_good = o.last_try;
    }

    /// The record as seen from inside a running boot of `state`: its try
    /// was counted as it started, so it is no failure while it runs, and
    /// once it reached `boot-complete.target` (`booted_well`) it is good —
    /// what the next boot will record.
    pub fn while_running(&mut self, state: u64, booted_well: bool) {
        let Some(o) = self.states.get_mut(&state) else {
            return;
        };
        o.tries = o.tries.saturating_sub(1);
        if booted_well {
            self.booted_well(state);
        }
    }

    /// Forgets states that no longer exist (after `exos gc`).
    pub fn keep_only(&mut self, states: &[u64]) {
        self.states.retain(|s, _| states.contains(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_that_keeps_failing_is_passed_over_for_the_last_good_one() {
        let mut r = BootRecord::default();
        let states = [1, 2, 3];
        r.tried(1, 10);
        r.booted_well(1);
        // State 2 never booted (nothing recorded): tried first.
        assert_eq!(r.choose(3, &states, 3).state, 3);
        for n in 1..=3 {
            assert_eq!(r.choose(3, &states, 3).state, 3, "try {n}");
            r.tried(3, 10 + n);
        }
        let c = r.choose(3, &states, 3);
        assert_eq!(c.state, 1);
        assert_eq!(c.passed_over, Some(PassedOver { state: 3, tries: 3 }));
        // Once it boots well, it is chosen again whatever it failed before.
        r.booted_well(3);
        assert_eq!(r.choose(3, &states, 3).state, 3);
        // Rolled back from 4 to 1, then 5 made from 1 keeps failing: back
        // to 1, the system as it last worked, not to 4.
        r.tried(4, 20);
        r.booted_well(4);
        r.tried(1, 30);
        r.booted_well(1);
        for n in 1..=3 {
            r.tried(5, 40 + n);
        }
        assert_eq!(r.choose(5, &[1, 2, 3, 4, 5], 3).state, 1);
        // With no good state to fall back to, the state is tried anyway.
        let mut fresh = BootRecord::default();
        for _ in 0..5 {
            fresh.tried(2, 1);
        }
        assert_eq!(fresh.choose(2, &states, 3).state, 2);
    }

    #[test]
    fn a_running_boot_is_no_failure_and_good_once_complete() {
        let mut r = BootRecord::default();
        r.tried(2, 10);
        r.tried(2, 20);
        let mut seen = r.clone();
        seen.while_running(2, false);
        assert_eq!(seen.states[&2].tries, 1);
        assert!(!seen.states[&2].good);
        seen = r.clone();
        seen.while_running(2, true);
        let o = seen.states[&2];
        assert!(o.good && o.tries == 0 && o.last_good == 20);
        // A state never tried is left as it is.
        seen.while_running(7, true);
        assert!(!seen.states.contains_key(&7));
    }

    #[test]
    fn the_file_round_trips_and_hostile_ones_are_refused() {
        let mut r = BootRecord::default();
        r.tried(4, 1_765_080_000);
        r.booted_well(4);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("boot.json");
        r.write(&path).unwrap();
        assert_eq!(BootRecord::read(&path).unwrap(), r);
        assert_eq!(
            BootRecord::read(&dir.path().join("missing")).unwrap(),
            BootRecord::default()
        );
        for bad in [
            &b"{\"states\": {\"x\": {}}}"[..],
            b"{\"states\": {}, \"extra\": 1}",
            b"{\"states\": {\"1\": {\"tries\": -1, \"good\": true, \"last_try\": 0}}}",
            b"[",
        ] {
            let e = BootRecord::parse(bad, &path).unwrap_err();
            assert!(e.to_string().contains("boot.json"), "{e}");
        }
        let huge = vec![b' '; MAX_FILE as usize + 1];
        assert!(BootRecord::parse(&huge, &path)
            .unwrap_err()
            .to_string()
            .contains("allowed"));
    }
}
