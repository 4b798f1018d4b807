//! `exos-mountd`: serves one packagefs mount in the foreground until a
//! signal or an unmount. `exos mount` runs it (in the background with
//! `--daemon`); it takes the same options. It uses the system allocator,
//! unlike `exos` (see serve.rs for why).

#![forbid(unsafe_code)]

use exos_cli::{keys, serve};

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "exos-mountd",
    version,
    about = "Serve an EXOS root's active packages over FUSE (run by `exos mount`)"
)]
struct Cli {
    /// Log warnings and errors only.
    #[arg(short, long)]
    quiet: bool,
    /// A package encryption key for encrypted packages (repeatable; plain
    /// key files only).
    #[arg(long = "key", value_name = "FILE")]
    keys: Vec<std::path::PathBuf>,
    /// Read package keys from this inherited descriptor (how `exos mount`
    /// hands them over, age-wrapped ones unwrapped).
    #[arg(long = "keys-fd", value_name = "FD")]
    keys_fd: Option<i32>,
    /// Once serving, point stderr and stdout at /dev/null (how `exos mount
    /// --daemon` without --log-file starts it: it reads the daemon's stderr
    /// through a pipe until then, to show why a start failed, and a pipe
    /// nobody reads any more would make every later message fail).
    #[arg(long, hide = true)]
    stderr_until_ready: bool,
    #[command(flatten)]
    mount: serve::MountArgs,
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if let Err(e) = serve::enter_chroot(&mut cli.mount) {
        eprintln!("exos-mountd: {}", exos_cli::output::error_chain(&e));
        return ExitCode::FAILURE;
    }
    let mut keys = Vec::new();
    for k in &cli.keys {
        match exos_hpkg::crypt::PackageKey::read(k) {
            Ok(key) => keys.push(key),
            Err(e) => {
                eprintln!("exos-mountd: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(fd) = cli.keys_fd {
        match keys::from_parent(fd) {
            Ok(more) => keys.extend(more),
            Err(e) => {
                eprintln!(
                    "exos-mountd: {}",
                    exos_cli::hints::with_hint(exos_cli::output::error_chain(&e), &e)
                );
                return ExitCode::FAILURE;
            }
        }
    }
    let keys = exos_hpkg::crypt::KeyRing::new(keys);
    let settings = exos_cli::settings::Settings::from_env();
    match serve::serve(
        &cli.mount,
        keys,
        &settings,
        cli.quiet,
        cli.stderr_until_ready,
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "exos-mountd: {}",
                exos_cli::hints::with_hint(exos_cli::output::error_chain(&e), &e)
            );
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    /// See exos's test of the same name (run in a debug build by
    /// scripts/test.sh).
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
