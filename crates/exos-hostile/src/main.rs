//! `exos-hostile DIR`: writes every hostile case into DIR, plus
//! `cases.tsv` (file, class, expected outcome) for scripts.

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: exos-hostile DIR");
        return ExitCode::from(2);
    };
    if let Err(e) = write_all(&dir) {
        eprintln!("exos-hostile: {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn write_all(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut index = std::fs::File::create(dir.join("cases.tsv"))?;
    for case in exos_hostile::cases() {
        std::fs::write(dir.join(case.file_name()), &case.bytes)?;
        writeln!(
            index,
            "{}\t{}\t{}\t{:?}",
            case.file_name(),
            case.bytes.len(),
            case.class,
            case.expect
        )?;
    }
    Ok(())
}
