//! `exos delta` and `exos apply`: thin front ends of `exos_delta`.

use std::path::Path;

use anyhow::Result;

use crate::output::{bytes, Out};

pub fn make(old: &Path, new: &Path, output: &Path, level: i32, out: Out) -> Result<()> {
    let opts = exos_delta::MakeOptions {
        level,
        ..Default::default()
    };
    let pb =
        crate::output::progress_bar(out, 0, "making the delta", crate::output::Counting::Items);
    let stats = exos_delta::make_with_progress(old, new, output, &opts, &|done, total| {
        if let Some(pb) = &pb {
            pb.set_length(total);
            pb.set_position(done);
        }
    });
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    let stats = stats?;
    out.result(&stats, |s| {
        let literal = if s.chunks_literal > 0 {
            format!(
                "; {} of its chunks are not reproduced by exos's {} and are carried as stored",
                s.chunks_literal, s.compression
            )
        } else {
            String::new()
        };
        format!(
            "{}: {} for a {} package ({:.1}%); {} of its files matched in the old package, {} new{literal}.\n",
            output.display(),
            bytes(s.delta_size),
            bytes(s.to_size),
            100.0 * s.delta_size as f64 / s.to_size.max(1) as f64,
            s.files_matched,
            s.files_new
        )
    })
}

pub fn apply(old: &Path, delta: &Path, output: &Path, out: Out) -> Result<()> {
    let applied = exos_delta::apply(old, delta, output)?;
    out.result(&applied, |a| {
        format!(
            "{}: {} rebuilt, SHA-256 {} as the delta promises.\n",
            output.display(),
            bytes(a.size),
            a.sha256
        )
    })
}
