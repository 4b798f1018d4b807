//! Shell completion of package names: the scripts clap generates complete
//! commands and options; this adds, for bash, zsh and fish, the names of
//! installed packages (remove, info, files, why, hold, unhold, upgrade)
//! and of installed and offered ones (install), read at completion time by
//! the hidden `exos __complete-names` — the root from the words typed so far
//! (`-r ROOT`, `--root ROOT`), else `$EXOS_ROOT`.

use std::collections::BTreeSet;
use std::path::PathBuf;

/// Which names a command takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NameKind {
    /// Installed packages.
    Installed,
    /// Installed packages and those the repositories offer.
    Available,
}

/// The root named in the words of a command line being completed.
fn root_in(words: &[String], env_root: Option<PathBuf>) -> Option<PathBuf> {
    let mut found = None;
    let mut it = words.iter();
    while let Some(w) = it.next() {
        if w == "-r" || w == "--root" {
            found = it.next().map(PathBuf::from);
        } else if let Some(v) = w.strip_prefix("--root=") {
            found = Some(PathBuf::from(v));
        }
    }
    found.or(env_root)
}

/// The names to offer, sorted, one per line (the names a user types: an
/// imported package's Debian name). Silent about every error: a
/// completion prints nothing rather than a message.
pub fn names(kind: NameKind, words: &[String], env_root: Option<PathBuf>) -> String {
    let Some(root) = root_in(words, env_root) else {
        return String::new();
    };
    let mut names = BTreeSet::new();
    if let Ok(r) = exos_manager::Root::read_only(&root) {
        for p in exos_manager::query::installed_packages(&r).unwrap_or_default() {
            names.insert(p.manifest.original_name.clone().unwrap_or(p.manifest.name));
        }
    }
    if kind == NameKind::Available {
        let client = exos_repo::Client::new(&root);
        for o in client.offered().unwrap_or_default() {
            names.insert(o.manifest.original_name.clone().unwrap_or(o.manifest.name));
        }
    }
    names.into_iter().map(|n| n + "\n").collect()
}

/// The commands whose arguments are installed packages' names.
const INSTALLED: &str = "remove info files why hold unhold upgrade";

/// clap's completion script for `shell` with package names added. zsh's
/// ends by running or registering `_exos`; that ending moves after the
/// names' wrapper, which takes its place.
pub fn complete_script(shell: clap_complete::Shell, clap_script: &str) -> String {
    let ending = "if [ \"$funcstack[1]\" = \"_exos\" ]; then\n    _exos \"$@\"\nelse\n    compdef _exos exos\nfi\n";
    let body = match shell {
        clap_complete::Shell::Zsh => clap_script.replacen(ending, "", 1),
        _ => clap_script.to_string(),
    };
    body + &names_script(shell)
}

/// What is added to clap's script for `shell` (empty for shells without
/// name completion).
pub fn names_script(shell: clap_complete::Shell) -> String {
    match shell {
        clap_complete::Shell::Bash => format!(
            r#"
# Package names (exos __complete-names), then clap's completion.
_exos_names() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" sub="${{COMP_WORDS[1]}}" kind=""
    case " {INSTALLED} " in *" $sub "*) kind=installed ;; esac
    [ "$sub" = install ] && kind=available
    if [ -n "$kind" ] && [ "$COMP_CWORD" -gt 1 ] && [[ "$cur" != -* ]] \
        && [[ "${{COMP_WORDS[COMP_CWORD-1]}}" != -* ]]; then
        local IFS=$'\n'
        COMPREPLY=($(compgen -W "$(exos __complete-names "$kind" -- "${{COMP_WORDS[@]}}" 2>/dev/null)" -- "$cur"))
        [ "${{#COMPREPLY[@]}}" -gt 0 ] && return 0
    fi
    _exos "$@"
}}
complete -F _exos_names -o bashdefault -o default -o nosort exos
"#
        ),
        clap_complete::Shell::Zsh => format!(
            r#"
# Package names (exos __complete-names), then clap's completion. (Also
# when this file is autoloaded from fpath as _exos: see complete_script.)
_exos_names() {{
    local sub=${{words[2]}} kind=""
    case " {INSTALLED} " in *" $sub "*) kind=installed ;; esac
    [[ $sub == install ]] && kind=available
    if [[ -n $kind && $CURRENT -gt 2 && ${{words[CURRENT]}} != -* && ${{words[CURRENT-1]}} != -* ]]; then
        local -a names
        names=(${{(f)"$(exos __complete-names $kind -- ${{words[@]}} 2>/dev/null)"}})
        if (( ${{#names}} )); then compadd -a names; return; fi
    fi
    _exos "$@"
}}
if [ "$funcstack[1]" = "_exos" ]; then
    _exos_names "$@"
else
    compdef _exos_names exos
fi
"#
        ),
        clap_complete::Shell::Fish => format!(
            r#"
# Package names (exos __complete-names).
complete -c exos -n '__fish_seen_subcommand_from {INSTALLED}' -f -a '(exos __complete-names installed -- (commandline -opc) 2>/dev/null)'
complete -c exos -n '__fish_seen_subcommand_from install' -a '(exos __complete-names available -- (commandline -opc) 2>/dev/null)'
"#
        ),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_comes_from_the_words_else_the_environment() {
        let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            root_in(
                &w(&["exos", "remove", "-r", "/a", "x"]),
                Some("/env".into())
            ),
            Some(PathBuf::from("/a"))
        );
        assert_eq!(
            root_in(&w(&["exos", "remove", "--root=/b"]), None),
            Some(PathBuf::from("/b"))
        );
        assert_eq!(
            root_in(&w(&["exos", "remove"]), Some("/env".into())),
            Some(PathBuf::from("/env"))
        );
        assert_eq!(root_in(&w(&["exos", "remove", "-r"]), None), None);
    }
}
