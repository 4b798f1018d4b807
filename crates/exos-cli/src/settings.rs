//! Settings resolved once, at the edge: everything the environment decides
//! (`EXOS_BLOCK_CACHE`, `EXOS_EXEC_CACHE`, `EXOS_NET_TIMEOUT`,
//! `EXOS_METADATA_MAX_AGE`, `HOME`, `SHELL`, `NOTIFY_SOCKET`,
//! `XDG_CACHE_HOME`, whether the process is root) is read here and passed
//! down; no library reads the environment.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use exos_repo::Timeouts;

/// Why there is no block cache: the default one needs a home.
pub const NO_DEFAULT_CACHE: &str =
    "no block cache: $HOME is not set (set EXOS_BLOCK_CACHE or give --block-cache DIR)";

/// The environment, as read at start.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The block cache of lazy installs: `$EXOS_BLOCK_CACHE`, else
    /// `/var/cache/exos/blocks` for root and `$XDG_CACHE_HOME/exos/blocks`
    /// (or `~/.cache/exos/blocks`) for others; none for a user with
    /// neither (no shared fallback such as `/tmp`).
    pub block_cache: Option<PathBuf>,
    /// The exec cache of mounts, found the same way (`$EXOS_EXEC_CACHE`,
    /// `/var/cache/exos/exec`, `~/.cache/exos/exec`).
    pub exec_cache: Option<PathBuf>,
    /// Network timeouts: `EXOS_NET_TIMEOUT` seconds for each, else the
    /// defaults.
    pub timeouts: Timeouts,
    /// How old repository metadata may be before an install by name or an
    /// upgrade refreshes it: `EXOS_METADATA_MAX_AGE` (`90`, `30m`, `6h`,
    /// `2d`; `0`: always; `never`: only `exos repo refresh`), else a day.
    pub metadata_max_age: Option<Duration>,
    /// The caller's shell, `$SHELL` (an absolute path), for `exos shell`.
    pub shell: Option<PathBuf>,
    /// `$EXOS_ROOT`, for completions (commands read it through clap).
    pub exos_root: Option<PathBuf>,
    /// `$NOTIFY_SOCKET`: where a service manager waits for readiness.
    pub notify_socket: Option<OsString>,
    /// Variables that were set but could not be read (said once, defaults
    /// used instead).
    pub problems: Vec<String>,
}

/// The default [`Settings::metadata_max_age`]: a day, as apt's daily
/// update timer and dnf's `metadata_expire` (48 h) are of that order.
pub const DEFAULT_METADATA_MAX_AGE: Duration = Duration::from_secs(86_400);

/// `90`, `90s`, `30m`, `6h`, `2d` or `never` (`None`).
pub fn parse_age(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    if text == "never" {
        return Ok(None);
    }
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{text:?}: an age is a number with s, m, h or d, or \"never\""
            ))
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: an age is a number with s, m, h or d, or \"never\""))?;
    Ok(Some(Duration::from_secs(n.saturating_mul(scale))))
}

/// What [`Settings`] are made from: the variables and who runs.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub root: bool,
    pub home: Option<OsString>,
    pub xdg_cache_home: Option<OsString>,
    pub block_cache: Option<OsString>,
    pub exec_cache: Option<OsString>,
    pub net_timeout: Option<OsString>,
    pub metadata_max_age: Option<OsString>,
    pub shell: Option<OsString>,
    pub exos_root: Option<OsString>,
    pub notify_socket: Option<OsString>,
}

impl Environment {
    /// This process's.
    pub fn current() -> Environment {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        Environment {
            root: rustix::process::geteuid().is_root(),
            home: var("HOME"),
            xdg_cache_home: var("XDG_CACHE_HOME"),
            block_cache: var("EXOS_BLOCK_CACHE"),
            exec_cache: var("EXOS_EXEC_CACHE"),
            net_timeout: var("EXOS_NET_TIMEOUT"),
            metadata_max_age: var("EXOS_METADATA_MAX_AGE"),
            shell: var("SHELL"),
            exos_root: var("EXOS_ROOT"),
            notify_socket: var("NOTIFY_SOCKET"),
        }
    }
}

impl Settings {
    /// The settings of this process.
    pub fn from_env() -> Settings {
        Settings::from(&Environment::current())
    }

    /// The settings `env` gives.
    pub fn from(env: &Environment) -> Settings {
        let cache = |explicit: &Option<OsString>, name: &str| -> Option<PathBuf> {
            if let Some(d) = explicit {
                return Some(PathBuf::from(d));
            }
            if env.root {
                return Some(PathBuf::from("/var/cache/exos").join(name));
            }
            let base = env
                .xdg_cache_home
                .as_ref()
                .map(PathBuf::from)
                .or_else(|| env.home.as_ref().map(|h| PathBuf::from(h).join(".cache")))?;
            Some(base.join("exos").join(name))
        };
        let timeouts = env
            .net_timeout
            .as_ref()
            .and_then(|v| v.to_str()?.parse::<u64>().ok())
            .map(Timeouts::all)
            .unwrap_or_default();
        let mut problems = Vec::new();
        let metadata_max_age = match &env.metadata_max_age {
            None => Some(DEFAULT_METADATA_MAX_AGE),
            Some(v) => match parse_age(&v.to_string_lossy()) {
                Ok(age) => age,
                Err(e) => {
                    problems.push(format!("EXOS_METADATA_MAX_AGE={e}; using a day"));
                    Some(DEFAULT_METADATA_MAX_AGE)
                }
            },
        };
        Settings {
            block_cache: cache(&env.block_cache, "blocks"),
            exec_cache: cache(&env.exec_cache, "exec"),
            timeouts,
            metadata_max_age,
            shell: env
                .shell
                .as_ref()
                .map(PathBuf::from)
                .filter(|p| p.is_absolute()),
            exos_root: env.exos_root.as_ref().map(PathBuf::from),
            notify_socket: env.notify_socket.clone(),
            problems,
        }
    }

    /// What a change of the package manager needs of them.
    pub fn for_changes(&self) -> exos_manager::workflow::Settings {
        exos_manager::workflow::Settings {
            block_cache: self.block_cache.clone(),
            timeouts: self.timeouts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_and_timeouts_come_from_the_environment_once() {
        let user = Environment {
            home: Some("/home/me".into()),
            ..Default::default()
        };
        let s = Settings::from(&user);
        assert_eq!(
            s.block_cache.unwrap(),
            PathBuf::from("/home/me/.cache/exos/blocks")
        );
        assert_eq!(
            s.exec_cache.unwrap(),
            PathBuf::from("/home/me/.cache/exos/exec")
        );
        let s = Settings::from(&Environment {
            xdg_cache_home: Some("/x".into()),
            ..user.clone()
        });
        assert_eq!(s.block_cache.unwrap(), PathBuf::from("/x/exos/blocks"));
        // No home: no cache, and never a shared place.
        let s = Settings::from(&Environment::default());
        assert!(s.block_cache.is_none() && s.exec_cache.is_none());
        let root = Settings::from(&Environment {
            root: true,
            ..Default::default()
        });
        assert_eq!(
            root.exec_cache.unwrap(),
            PathBuf::from("/var/cache/exos/exec")
        );
        let s = Settings::from(&Environment {
            block_cache: Some("/b".into()),
            net_timeout: Some("3".into()),
            ..Default::default()
        });
        assert_eq!(s.block_cache.unwrap(), PathBuf::from("/b"));
        assert_eq!(s.timeouts.connect, std::time::Duration::from_secs(3));
        assert_eq!(s.metadata_max_age, Some(DEFAULT_METADATA_MAX_AGE));
    }

    #[test]
    fn metadata_age_is_read_with_units_and_bad_values_are_said() {
        assert_eq!(parse_age("90"), Ok(Some(Duration::from_secs(90))));
        assert_eq!(parse_age("30m"), Ok(Some(Duration::from_secs(1800))));
        assert_eq!(parse_age("2d"), Ok(Some(Duration::from_secs(172_800))));
        assert_eq!(parse_age("0"), Ok(Some(Duration::ZERO)));
        assert_eq!(parse_age("never"), Ok(None));
        assert!(parse_age("1w").is_err() && parse_age("h").is_err());
        let s = Settings::from(&Environment {
            metadata_max_age: Some("soon".into()),
            ..Default::default()
        });
        assert_eq!(s.metadata_max_age, Some(DEFAULT_METADATA_MAX_AGE));
        assert!(s.problems[0].contains("EXOS_METADATA_MAX_AGE"));
    }
}
