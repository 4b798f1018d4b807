//! `exos key`, `exos sign`, `exos verify`, `exos trust`: arguments and
//! output around exos-trust (keys, minisign signatures, a root's trust
//! store).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use exos_root::{Layer, Layout};
use exos_trust::{FileDigest, Policy, PublicKey, TrustStore, TrustedKey};
use serde::Serialize;

use crate::output::Out;
use crate::RootArg;

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Make a signing key: NAME.key (secret, mode 0600) and NAME.pub, in minisign's format.
    Generate {
        /// The key's name: the files are NAME.key and NAME.pub.
        name: String,
        /// Directory to write them into.
        #[arg(short, long, default_value = ".")]
        dir: PathBuf,
        /// Make a package encryption key instead: NAME.pkey (secret, mode 0600), for `exos encrypt` and `--key`.
        #[arg(long)]
        encryption: bool,
    },
}

#[derive(Args)]
pub struct SignArgs {
    #[arg(required = true)]
    packages: Vec<PathBuf>,
    /// The secret key (from `exos key generate` or `minisign -G -W`).
    #[arg(short, long = "secret-key")]
    key: PathBuf,
    /// Keys of encrypted packages (their name and version go into the
    /// signature's trusted comment).
    #[command(flatten)]
    package_keys: crate::keys::KeyArgs,
}

#[derive(Args)]
pub struct VerifyArgs {
    #[arg(required = true)]
    packages: Vec<PathBuf>,
    /// Public keys to accept (files or minisign's base64 line; repeatable).
    /// Without one, the keys a root trusts for --layer.
    #[arg(short = 'p', long = "public-key", value_name = "KEY")]
    public_keys: Vec<String>,
    /// The root whose trust store decides (default: $EXOS_ROOT).
    #[arg(short, long, env = "EXOS_ROOT")]
    root: Option<PathBuf>,
    /// The layer the packages would go into, with --root.
    #[arg(short, long, default_value = "system")]
    layer: Layer,
}

#[derive(Subcommand)]
pub enum TrustCommand {
    /// Trust a public key for some layers.
    Add {
        /// The public key file (or minisign's base64 line).
        key: String,
        /// Layers packages signed by it may go into (comma-separated).
        #[arg(
            short,
            long,
            value_delimiter = ',',
            default_value = "system,common,user"
        )]
        layers: Vec<Layer>,
        /// A name for people (default: the key file's name).
        #[arg(short, long)]
        name: Option<String>,
        #[command(flatten)]
        root: RootArg,
    },
    /// Stop trusting a key.
    Remove {
        /// The key id, as `exos trust list` shows it.
        id: String,
        #[command(flatten)]
        root: RootArg,
    },
    /// The trusted keys and each layer's policy.
    List {
        #[command(flatten)]
        root: RootArg,
    },
    /// Whether a layer takes unsigned packages (`any`) or only packages
    /// signed by a key trusted for it (`signed`).
    Policy {
        layer: Layer,
        policy: Policy,
        #[command(flatten)]
        root: RootArg,
    },
}

/// `exos key generate`.
#[derive(Serialize)]
pub struct KeyReport {
    pub id: String,
    pub secret_key: PathBuf,
    pub public_key: PathBuf,
}

/// `exos sign`.
#[derive(Serialize)]
pub struct SignReport {
    pub key: String,
    pub signed: Vec<Signed>,
}

#[derive(Serialize)]
pub struct Signed {
    pub package: PathBuf,
    pub signature: PathBuf,
    pub trusted_comment: String,
}

/// `exos verify`: one result per package; the command fails when any is
/// not good.
#[derive(Serialize)]
pub struct VerifyReport {
    pub packages: Vec<Verified>,
}

#[derive(Serialize)]
pub struct Verified {
    pub package: PathBuf,
    pub good: bool,
    /// The key that made a good signature.
    pub key: Option<String>,
    pub trusted_comment: Option<String>,
    /// Why it is not good.
    pub error: Option<String>,
}

/// `exos trust list` (and the result of the other trust commands).
#[derive(Serialize)]
pub struct TrustReport<'a> {
    pub keys: &'a [TrustedKey],
    pub policy: &'a exos_root::PerLayer<Policy>,
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("{} (not overwritten)", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| path.display().to_string())
}

/// What `exos key generate --encryption` made.
#[derive(Serialize)]
pub struct PackageKeyReport {
    pub id: String,
    pub key: PathBuf,
}

/// What `exos encrypt` made.
#[derive(Serialize)]
pub struct EncryptReport {
    pub package: PathBuf,
    pub output: PathBuf,
    pub key: String,
    pub size: u64,
}

pub fn encrypt(
    package: &Path,
    output: &Path,
    keys: &[exos_hpkg::crypt::PackageKey],
    out: Out,
) -> Result<()> {
    let [key] = keys else {
        bail!("exos encrypt needs exactly one --key FILE (the package key to seal with)");
    };
    let size = exos_hpkg::crypt::encrypt_file(package, key, output)?;
    let report = EncryptReport {
        package: package.to_path_buf(),
        output: output.to_path_buf(),
        key: key.id().to_string(),
        size,
    };
    out.report(&report, |r| {
        format!(
            "{}: encrypted with key {} ({} bytes); read it with --key.\n",
            r.output.display(),
            r.key,
            r.size
        )
    })
}

pub fn key(cmd: &KeyCommand, out: Out) -> Result<()> {
    let KeyCommand::Generate {
        name,
        dir,
        encryption,
    } = cmd;
    if name.is_empty() || name.contains('/') {
        bail!("key name {name:?}: one file name, without '/'");
    }
    if !dir.is_dir() {
        bail!(
            "-d {}: no such directory (make it first; without -d, keys go to the current directory)",
            dir.display()
        );
    }
    if *encryption {
        let key = exos_hpkg::crypt::PackageKey::generate()?;
        let path = dir.join(format!("{name}.pkey"));
        write_new(&path, &key.render(), 0o600)?;
        let report = PackageKeyReport {
            id: key.id().to_string(),
            key: path,
        };
        return out.report(&report, |r| {
            format!(
                "package key {}: {} (keep it private; give it with --key)\n",
                r.id,
                r.key.display()
            )
        });
    }
    let sk = exos_trust::SecretKey::generate()?;
    let secret = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    if public.exists() {
        bail!("{} exists (not overwritten)", public.display());
    }
    write_new(&secret, &sk.render(), 0o600)?;
    write_new(&public, &sk.public().render(), 0o644)?;
    let report = KeyReport {
        id: sk.id.to_string(),
        secret_key: secret,
        public_key: public,
    };
    out.report(&report, |r| {
        format!(
            "key {}: secret key {} (keep it private), public key {}\n",
            r.id,
            r.secret_key.display(),
            r.public_key.display()
        )
    })
}

/// The trusted comment exos writes: minisign's time and file name, and the
/// package's name and version (so a renamed or swapped file shows).
fn trusted_comment(package: &Path, keys: &exos_hpkg::crypt::KeyRing) -> Result<String> {
    let p =
        exos_hpkg::Package::open_with(package, &exos_hpkg::OpenOptions::with_keys(keys.clone()))?;
    let info = p.info();
    let file = package
        .file_name()
        .map(|n| n.to_string_lossy().replace(['\t', '\n', '\r'], " "))
        .unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(format!(
        "timestamp:{now}\tfile:{file}\thashed\tpackage:{}-{}",
        info.name, info.version
    ))
}

pub fn sign(args: &SignArgs, out: Out) -> Result<()> {
    let sk = exos_trust::read_secret_key(&args.key)?;
    let keys = args.package_keys.ring()?;
    let mut signed = Vec::new();
    for package in &args.packages {
        let comment = trusted_comment(package, &keys)?;
        let digest = FileDigest::of_file(package).with_context(|| package.display().to_string())?;
        let sig = sk.sign(
            &digest.blake2b,
            &format!("signature from exos secret key {}", sk.id),
            &comment,
        )?;
        let path = exos_trust::beside(package);
        exos_root::write_public(&path, sig.render().as_bytes())
            .with_context(|| path.display().to_string())?;
        signed.push(Signed {
            package: package.clone(),
            signature: path,
            trusted_comment: comment,
        });
    }
    let report = SignReport {
        key: sk.id.to_string(),
        signed,
    };
    out.report(&report, |r| {
        r.signed
            .iter()
            .map(|s| {
                format!(
                    "signed {} with key {}: {}\n",
                    s.package.display(),
                    r.key,
                    s.signature.display()
                )
            })
            .collect()
    })
}

pub fn public_key(arg: &str) -> Result<PublicKey> {
    let path = Path::new(arg);
    if path.exists() {
        return Ok(exos_trust::read_public_key(path)?);
    }
    // A key's text is base64 (letters, digits, '+', '/', '='), possibly
    // after a comment line: anything with another character, like a '/'
    // at the start or a '.', was meant as a file.
    let looks_like_path = arg.starts_with(['/', '.', '~']) || arg.ends_with(".pub");
    if looks_like_path && !arg.contains('\n') {
        bail!("public key {arg}: no such file (give the key's .pub file, or its text)");
    }
    PublicKey::parse(arg.as_bytes()).map_err(|e| anyhow::anyhow!("public key {arg:?}: {e}"))
}

pub fn verify(args: &VerifyArgs, out: Out) -> Result<()> {
    let keys: Vec<PublicKey> = args
        .public_keys
        .iter()
        .map(|k| public_key(k))
        .collect::<Result<_>>()?;
    let store = match (&args.root, keys.is_empty()) {
        (Some(root), true) => Some(TrustStore::read(&Layout::new(root))?),
        (None, true) => bail!("verify: name a public key (-p KEY) or a root (-r ROOT)"),
        (_, false) => None,
    };
    let mut packages = Vec::new();
    for package in &args.packages {
        let result = (|| -> Result<(String, String)> {
            let sig_path = exos_trust::beside(package);
            let sig = exos_trust::read_signature(&sig_path)?;
            let digest =
                FileDigest::of_file(package).with_context(|| package.display().to_string())?;
            let key = match &store {
                Some(store) => store
                    .check(args.layer, &sig, &digest.blake2b)
                    .map(|k| k.id.clone())
                    .map_err(anyhow::Error::msg)?,
                None => {
                    let k = keys.iter().find(|k| k.id == sig.id).ok_or_else(|| {
                        anyhow::anyhow!(
                            "signed by key {}, which is not among the keys given",
                            sig.id
                        )
                    })?;
                    k.verify(&sig, &digest.blake2b)
                        .map_err(anyhow::Error::msg)?;
                    k.id.to_string()
                }
            };
            Ok((key, sig.trusted_comment))
        })();
        packages.push(match result {
            Ok((key, comment)) => Verified {
                package: package.clone(),
                good: true,
                key: Some(key),
                trusted_comment: Some(comment),
                error: None,
            },
            Err(e) => Verified {
                package: package.clone(),
                good: false,
                key: None,
                trusted_comment: None,
                error: Some(crate::output::error_chain(&e)),
            },
        });
    }
    let bad = packages.iter().filter(|p| !p.good).count();
    let report = VerifyReport { packages };
    out.result(&report, |r| {
        r.packages
            .iter()
            .map(|p| match (&p.key, &p.error) {
                (Some(k), _) => format!("{}: good signature by key {k}\n", p.package.display()),
                (_, Some(e)) => format!("{}: BAD: {e}\n", p.package.display()),
                _ => String::new(),
            })
            .collect()
    })?;
    if bad > 0 {
        let summary = format!(
            "{bad} of {} packages failed verification",
            report.packages.len()
        );
        if out.json {
            return Err(crate::output::Reported(summary).into());
        }
        bail!(summary);
    }
    Ok(())
}

pub fn trust(cmd: &TrustCommand, out: Out) -> Result<()> {
    let root = match cmd {
        TrustCommand::Add { root, .. }
        | TrustCommand::Remove { root, .. }
        | TrustCommand::List { root }
        | TrustCommand::Policy { root, .. } => root.path()?,
    };
    let layout = Layout::new(root);
    if !layout.exists() {
        bail!("{}: not an EXOS root (exos init)", root.display());
    }
    // Changes hold the root's writer lock, like every other change.
    let _lock = match cmd {
        TrustCommand::List { .. } => None,
        _ => Some(exos_manager::Root::lock(root)?),
    };
    let mut store = TrustStore::read(&layout)?;
    let note = match cmd {
        TrustCommand::Add {
            key, layers, name, ..
        } => {
            let k = public_key(key)?;
            let name = name.clone().unwrap_or_else(|| {
                Path::new(key)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
            let id = k.id.to_string();
            store.keys.retain(|t| t.id != id);
            let mut layers = layers.clone();
            layers.sort();
            layers.dedup();
            store.keys.push(TrustedKey::new(&k, &name, layers));
            Some(format!("trusting key {id}"))
        }
        TrustCommand::Remove { id, .. } => {
            let before = store.keys.len();
            store.keys.retain(|t| &t.id != id);
            if store.keys.len() == before {
                bail!("key {id} is not trusted by {}", root.display());
            }
            Some(format!("no longer trusting key {id}"))
        }
        TrustCommand::Policy { layer, policy, .. } => {
            *store.policy.get_mut(*layer) = *policy;
            Some(format!("{layer}: {policy:?}").to_lowercase())
        }
        TrustCommand::List { .. } => None,
    };
    if let Some(note) = note {
        store.write(&layout)?;
        out.note(note);
    }
    let report = TrustReport {
        keys: &store.keys,
        policy: &store.policy,
    };
    let human = |r: &TrustReport| {
        let mut s = String::new();
        for (layer, p) in r.policy.iter() {
            s += &format!(
                "{layer}: {}\n",
                match p {
                    Policy::Any => "any package",
                    Policy::Signed => "signed packages only",
                }
            );
        }
        for k in r.keys {
            let layers: Vec<&str> = k.layers.iter().map(|l| l.name()).collect();
            s += &format!("key {} {} for {}\n", k.id, k.name, layers.join(","));
        }
        s
    };
    // The listing is what `list` asks for; after a change it is a report.
    match cmd {
        TrustCommand::List { .. } => out.result(&report, human),
        _ => out.report(&report, human),
    }
}
