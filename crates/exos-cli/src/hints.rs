//! What to type next, for an error. Libraries say what went wrong; only
//! the CLI knows its flags and commands, so it adds them here, after the
//! message: `this would also remove hello 1.0-1 (--yes to go ahead)`.

use exos_manager::{Distrust, Error as ManagerError};
use exos_repo::RepoError;

/// The hint for the first error in `error`'s chain that has one.
pub fn hint(error: &anyhow::Error) -> Option<String> {
    error.chain().find_map(|cause| {
        if let Some(e) = cause.downcast_ref::<ManagerError>() {
            return manager(e);
        }
        if let Some(e) = cause.downcast_ref::<RepoError>() {
            return repo(e);
        }
        if let Some(e) = cause.downcast_ref::<exos_lazy::LazyError>() {
            return lazy(e);
        }
        if let Some(e) = cause.downcast_ref::<exos_hpkg::Error>() {
            return package(e);
        }
        if let Some(e) = cause.downcast_ref::<exos_deb::DebError>() {
            return deb(e);
        }
        if let Some(e) = cause.downcast_ref::<exos_view::ViewError>() {
            return view(e);
        }
        None
    })
}

/// An error's line with its hint, if it has one.
pub fn with_hint(line: String, error: &anyhow::Error) -> String {
    match hint(error) {
        Some(h) => format!("{line} ({h})"),
        None => line,
    }
}

fn manager(e: &ManagerError) -> Option<String> {
    Some(match e {
        ManagerError::Essential(_) => "--force to do it anyway".into(),
        ManagerError::NeedsConsent(_) => "--yes to go ahead".into(),
        ManagerError::NotARoot(path) => format!("run `exos init {}`", path.display()),
        ManagerError::MissingFromState { .. } => "run `exos check`".into(),
        ManagerError::InSeveralLayers { .. } | ManagerError::OverlaysInSeveralLayers(_) => {
            "say which with --layer".into()
        }
        ManagerError::ForcedByName => "drop --force".into(),
        ManagerError::Held(names) => format!("`exos unhold {}` first", names.join(" ")),
        ManagerError::NoBlockCache => {
            "$HOME is not set: set EXOS_BLOCK_CACHE or give --block-cache DIR".into()
        }
        ManagerError::Untrusted(Distrust::UnsignedOverlay(layer)) => {
            format!("--force to add it anyway, or `exos trust policy {layer} any`")
        }
        ManagerError::Untrusted(Distrust::LazyInSignedLayer { layer, .. }) => {
            format!("install it without --lazy, or `exos trust policy {layer} any`")
        }
        ManagerError::Io { path, source }
            if source.kind() == std::io::ErrorKind::PermissionDenied
                && path.ends_with("system/state/lock") =>
        {
            "changing the root's layers needs root; --user changes your own layer".into()
        }
        ManagerError::Repo(e) => return repo(e),
        ManagerError::Lazy(e) => return lazy(e),
        ManagerError::Package(e) => return package(e),
        _ => return None,
    })
}

fn repo(e: &RepoError) -> Option<String> {
    Some(match e {
        RepoError::UnknownRepository(_) => "exos repo list".into(),
        RepoError::RepositoryExists(name) => format!("exos repo remove {name} first"),
        RepoError::NeverRefreshed(_) => "exos repo refresh".into(),
        RepoError::NoTrustedRoot(_) => "exos repo add again".into(),
        RepoError::Expired { .. } => {
            "`exos repo refresh` when the publisher has re-signed it".into()
        }
        RepoError::Network { failure, .. } if failure.resumable() => {
            "run the command again to resume".into()
        }
        _ => return None,
    })
}

fn lazy(e: &exos_lazy::LazyError) -> Option<String> {
    match e {
        exos_lazy::LazyError::Repo(e) => repo(e),
        _ => None,
    }
}

fn package(e: &exos_hpkg::Error) -> Option<String> {
    match e.kind() {
        exos_hpkg::ErrorKind::Encrypted(_) => Some("--key FILE".into()),
        _ => None,
    }
}

fn deb(e: &exos_deb::DebError) -> Option<String> {
    match e {
        exos_deb::DebError::OverLimit { limit, .. } => Some(match limit {
            exos_deb::OverLimit::File { .. } => "--max-file-mib to raise it".into(),
            exos_deb::OverLimit::Package { .. } => "--max-package-mib to raise it".into(),
        }),
        _ => None,
    }
}

fn view(e: &exos_view::ViewError) -> Option<String> {
    match e {
        exos_view::ViewError::NotMounted { root } => Some(format!(
            "start the mount first: exos mount {root} MOUNTPOINT --daemon --pid-file F"
        )),
        exos_view::ViewError::RootSandbox => {
            Some("give --user, or root's sandboxes run as nobody".into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hint_follows_the_message_through_wrappers_and_context() {
        let e = anyhow::Error::new(ManagerError::Repo(RepoError::UnknownRepository(
            "main".into(),
        )))
        .context("installing hello");
        assert_eq!(
            with_hint(crate::output::error_chain(&e), &e),
            "installing hello: no repository named \"main\" (exos repo list)"
        );
        let plain = anyhow::anyhow!("nothing to say");
        assert_eq!(hint(&plain), None);
    }
}
