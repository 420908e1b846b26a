//! `kpi diff`: resolves the two sides (folders, or a folder at a git revision), checks both,
//! and prints what changed.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::args::{DiffArgs, DiffFormat};
use super::run::runtime;
use super::{CliError, Exit, load_valid, print};
use crate::diag::{SourceDb, render};
use crate::diff::{self, Side};
use crate::exec::{RunError, RunRequest};
use crate::source::DataRoot;

fn msg(s: impl Into<String>) -> CliError {
    CliError::Message(s.into())
}

/// Runs git in `dir`, returning stdout or git's own complaint.
fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>, CliError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| msg(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        return Err(msg(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

/// Writes the files of folder `head` as they are at `rev` into `into`.
fn checkout(head: &Path, rev: &str, into: &Path) -> Result<(), CliError> {
    let abs = std::fs::canonicalize(head)
        .map_err(|e| msg(format!("cannot read {}: {e}", head.display())))?;
    let top = String::from_utf8_lossy(&git(&abs, &["rev-parse", "--show-toplevel"])?)
        .trim()
        .to_string();
    let top = std::fs::canonicalize(&top).map_err(|e| msg(format!("{top}: {e}")))?;
    let rel = abs.strip_prefix(&top).unwrap_or(Path::new(""));
    let rel = rel.to_string_lossy().replace('\\', "/");
    let spec = if rel.is_empty() {
        ".".to_string()
    } else {
        rel.clone()
    };
    let listing = git(&top, &["ls-tree", "-r", "--name-only", rev, "--", &spec])?;
    let listing = String::from_utf8_lossy(&listing);
    if listing.trim().is_empty() {
        return Err(msg(format!("{rev} has no folder `{spec}`")));
    }
    for file in listing.lines() {
        let inner = file
            .strip_prefix(&rel)
            .unwrap_or(file)
            .trim_start_matches('/');
        let target = into.join(inner);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, git(&top, &["show", &format!("{rev}:{file}")])?)?;
    }
    Ok(())
}

pub fn run(args: DiffArgs, color: bool) -> Result<Exit, CliError> {
    let tmp;
    let (base_dir, head_dir): (PathBuf, PathBuf) = match (&args.base_ref, &args.first, &args.second)
    {
        (Some(rev), head, None) => {
            let head = head.clone().unwrap_or_else(|| PathBuf::from("metrics"));
            tmp = tempfile::Builder::new().prefix("kpi-diff-").tempdir()?;
            let base = tmp
                .path()
                .join(head.file_name().unwrap_or(head.as_os_str()));
            checkout(&head, rev, &base)?;
            (base, head)
        }
        (None, Some(b), Some(h)) => (b.clone(), h.clone()),
        (Some(_), _, Some(_)) => {
            return Err(msg("with --base, give at most one folder (the head)"));
        }
        (None, _, _) => {
            return Err(msg(
                "give two metric folders (BASE HEAD), or --base GIT_REF",
            ));
        }
    };
    let schema_root = args
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from("sample_data"));
    let root = DataRoot::open(&schema_root).map_err(|e| {
        msg(format!(
            "{e}; kpi diff compiles metrics against a data root's schemas: pass --data DIR"
        ))
    })?;
    let (mut base_db, mut head_db) = (SourceDb::default(), SourceDb::default());
    let (Some(base), Some(head)) = (
        load_valid(&base_dir, &mut base_db, color)?,
        load_valid(&head_dir, &mut head_db, color)?,
    ) else {
        return Ok(Exit::Failed);
    };
    let req = RunRequest {
        from: args.periods.from.clone(),
        to: args.periods.to.clone(),
        grain: args.periods.grain,
        tz: args.periods.tz.clone(),
        ..RunRequest::default()
    };
    let values = args.data.is_some();
    let result = runtime().block_on(async {
        let mut b = Side {
            catalog: &base,
            db: &mut base_db,
        };
        let mut h = Side {
            catalog: &head,
            db: &mut head_db,
        };
        diff::compare(&mut b, &mut h, &root, &req, values).await
    });
    let changes = match result {
        Ok(c) => c,
        Err(RunError::Diagnostics(d)) => {
            eprint!("{}", render::human(&d, &head_db, color));
            return Ok(Exit::Failed);
        }
        Err(e) => return Err(msg(e.to_string())),
    };
    let out = match args.format {
        DiffFormat::Human => diff::render_human(&changes, values),
        DiffFormat::Markdown => diff::render_markdown(&changes, values),
        DiffFormat::Json => {
            let mut s = serde_json::to_string_pretty(&changes).expect("changes serialize");
            s.push('\n');
            s
        }
    };
    print(&out)?;
    Ok(Exit::Ok)
}
