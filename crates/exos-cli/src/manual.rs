//! What the manual pages add to what clap knows: EXIT STATUS, ENVIRONMENT,
//! FILES and EXAMPLES sections (roff), per page.

/// Examples, by page (`exos-install`, …): (what it does, command).
const EXAMPLES: &[(&str, &[(&str, &str)])] = &[
    (
        "exos",
        &[
            ("Build a package and install it into a new root", "exos build hello-src -o hello.hpkg && exos init /exos && exos install hello.hpkg -r /exos"),
            ("Mount the root and run a program from it", "exos mount /exos /run/exos/mnt --daemon --pid-file /run/exos/pid && exos run -r /exos -- hello"),
            ("Install from a repository, by name", "exos repo add main https://example.com/exos -k main.pub -r /exos && exos install hello -r /exos"),
        ],
    ),
    ("exos-build", &[("Pack a directory holding manifest.json", "exos build hello-src -o hello-1.0-1.hpkg")]),
    ("exos-list", &[("What a package holds, as Haiku's package list prints it", "exos list hello.hpkg"), ("What a root has installed, by layer", "exos list --installed -r /exos")]),
    ("exos-info", &[("An installed or offered package by name", "exos info hello -r /exos"), ("A package file", "exos info hello.hpkg")]),
    ("exos-files", &[("The files an installed package holds (like dpkg -L)", "exos files hello -r /exos")]),
    ("exos-owner", &[("Which package holds a file of a mounted root (like dpkg -S)", "exos owner /run/exos/mnt/merged/bin/hello")]),
    ("exos-why", &[("Why a package is installed, and what needs it", "exos why libgreet -r /exos")]),
    ("exos-history", &[("Every state and what changed it", "exos history -r /exos")]),
    ("exos-hold", &[("Keep a package at its version (or within a range)", "exos hold hello -r /exos; exos hold 'libgreet<2' -r /exos")]),
    ("exos-unhold", &[("Let upgrades move it again", "exos unhold hello -r /exos")]),
    ("exos-install", &[
        ("Install by name from the repositories (with what it needs)", "exos install hello -r /exos"),
        ("Install a version range, or a Debian package's Debian range", "exos install 'hello>=1.0' 'jq>=1.6' -r /exos"),
        ("Install package files, others from a directory as needed", "exos install app.hpkg -a pkgs/ -r /exos"),
        ("Install into your own layer, without root", "exos install --user hello -r /exos"),
        ("See what would change", "exos install --dry-run hello -r /exos"),
    ]),
    ("exos-remove", &[("Remove a package (asks when others would go too)", "exos remove hello -r /exos"), ("Remove one of your own", "exos remove --user hello -r /exos")]),
    ("exos-autoremove", &[("Remove dependencies nothing needs any more", "exos autoremove -r /exos")]),
    ("exos-upgrade", &[("Upgrade everything from the repositories (metadata refreshed when older than a day)", "exos upgrade -r /exos"), ("Refresh first, whatever the age", "exos upgrade --refresh -r /exos")]),
    ("exos-rollback", &[("Back to the state before the current one", "exos rollback -r /exos"), ("To state 3", "exos rollback 3 -r /exos")]),
    ("exos-state", &[("List the states; show one; compare two", "exos state list -r /exos; exos state show 3 -r /exos; exos state diff 2 3 -r /exos")]),
    ("exos-mount", &[
        ("Serve a root in the background", "exos mount /exos /run/exos/mnt --daemon --pid-file /run/exos/pid"),
        ("In the foreground, as a service (see exos-mount@.service)", "exos-mountd /exos /run/exos/exos"),
    ]),
    ("exos-unmount", &[("Stop serving (also cleans up after a daemon that died)", "exos unmount /run/exos/mnt")]),
    ("exos-status", &[("What a mount serves and refuses, and why", "exos status /run/exos/mnt; exos status -r /exos")]),
    ("exos-run", &[
        ("A command in your view of the mounted root", "exos run -r /exos -- hello"),
        ("Confined: no network, only its data directory writable", "exos run -r /exos --sandbox -- hello"),
    ]),
    ("exos-shell", &[("Your shell ($SHELL) in the view", "exos shell -r /exos")]),
    ("exos-import-deb", &[("Convert Debian packages", "apt-get download jq libjq1 libonig5 && exos import-deb *.deb -o pkgs/")]),
    ("exos-search", &[("Search the repositories' offers", "exos search greet -r /exos")]),
    ("exos-repo-add", &[("Add a repository, pinning its root key", "exos repo add main https://example.com/exos -k main.pub -r /exos")]),
    ("exos-repo-index", &[("Publish a directory of packages", "exos repo index pub/ -k release.key")]),
    ("exos-repo-refresh", &[("Refresh every repository's metadata now", "exos repo refresh -r /exos")]),
    ("exos-user-add", &[("Give a user a layer of their own (root)", "exos user add alice -r /exos")]),
    ("exos-gc", &[("Drop old states and unused files, keeping five", "exos gc --keep 5 -r /exos")]),
    ("exos-check", &[("Verify every package of every state", "exos check -r /exos")]),
    ("exos-completions", &[("Bash completion, package names included", "exos completions bash > /usr/local/share/bash-completion/completions/exos")]),
];

/// Roff-escapes `text` (backslashes and leading dots).
fn esc(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

/// The sections `page` (a page's name without `.1`: `exos-install`) gets
/// after clap's.
pub fn extra_sections(page: &str) -> String {
    let mut s = String::new();
    s += ".SH \"EXIT STATUS\"\n";
    for (code, meaning) in [
        ("0", "success"),
        ("1", "failure (the message says why; e.g. a change that needs \\-\\-yes, an untrusted package)"),
        ("2", "the command line is wrong"),
        ("3", "a file is not well\\-formed (a package, an index, a signed document)"),
        ("4", "no set of packages satisfies the request"),
        ("127", "exos run: the program is not in the view (and the message says why)"),
    ] {
        s += &format!(".TP\n\\fB{code}\\fR\n{meaning}\n");
    }
    s += ".SH ENVIRONMENT\n";
    for (var, meaning) in [
        ("EXOS_ROOT", "the root when \\-r is not given"),
        ("EXOS_METADATA_MAX_AGE", "how old repository metadata may be before an install by name or an upgrade refreshes it (90, 30m, 6h, 2d; 0: always; never); a day by default"),
        ("EXOS_NET_TIMEOUT", "seconds to connect and per response (10 and 30 by default)"),
        ("EXOS_BLOCK_CACHE", "the block cache of lazy installs (default /var/cache/exos/blocks for root, ~/.cache/exos/blocks for others)"),
        ("EXOS_EXEC_CACHE", "the exec cache of mounts (default /var/cache/exos/exec, ~/.cache/exos/exec)"),
        ("HOME, XDG_CACHE_HOME", "where a user's caches are"),
        ("SHELL", "what exos shell starts"),
        ("NOTIFY_SOCKET", "where exos\\-mountd tells a service manager it is ready (systemd's Type=notify)"),
    ] {
        s += &format!(".TP\n\\fB{var}\\fR\n{meaning}\n");
    }
    s += ".SH FILES\n";
    for (file, meaning) in [
        (
            "ROOT/system/packages, ROOT/common/packages, ROOT/user/packages",
            "the shared layers' active package files",
        ),
        (
            "ROOT/system/state/active.list, ROOT/system/state/states/",
            "the current state and every numbered state",
        ),
        (
            "ROOT/system/state/packages.json",
            "origins, automatic marks and holds of installed packages",
        ),
        (
            "ROOT/system/state/repos.json, ROOT/system/state/repos/",
            "repositories and their trusted metadata",
        ),
        (
            "ROOT/system/state/trust.json",
            "trusted keys and each layer's signature policy",
        ),
        (
            "ROOT/users/NAME/packages, ROOT/users/NAME/state",
            "a user's own layer and states (exos user add, \\-\\-user)",
        ),
        (
            "/var/cache/exos/blocks, /var/cache/exos/exec",
            "root's block and exec caches",
        ),
        (
            "/usr/local/lib/systemd/system/exos-mount@.service",
            "the unit serving a root at /run/exos/INSTANCE",
        ),
    ] {
        s += &format!(".TP\n\\fB{}\\fR\n{meaning}\n", esc(file));
    }
    s += ".SH EXAMPLES\n";
    match EXAMPLES.iter().find(|(p, _)| *p == page) {
        Some((_, examples)) => {
            for (what, command) in examples.iter() {
                s += &format!(
                    "{}:\n.PP\n.RS\n.nf\n{}\n.fi\n.RE\n.PP\n",
                    esc(what),
                    esc(command)
                );
            }
        }
        None => {
            s += &format!(
                "See \\fBexos\\fR(1) and the README; \\fB{} \\-\\-help\\fR lists every option.\n",
                esc(&page.replacen('-', " ", 1).replace('-', " "))
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_gets_the_sections_and_known_pages_their_examples() {
        let install = extra_sections("exos-install");
        for section in ["EXIT STATUS", "ENVIRONMENT", "FILES", "EXAMPLES"] {
            assert!(
                install.contains(&format!(".SH {section}"))
                    || install.contains(&format!(".SH \"{section}\"")),
                "{section}"
            );
        }
        assert!(install.contains("exos install \\-\\-user hello"));
        assert!(extra_sections("exos-key-generate").contains("exos key generate \\-\\-help"));
    }
}
