//! The command line: what the user typed ([`args`]), resolved into a checked configuration
//! and handed to one command module per subcommand. Output goes through [`Out`], which
//! treats a closed pipe as the reader being done, not as an error.

pub mod args;
mod cluster;
mod diff;
mod r#gen;
mod list;
mod report;
mod run;
mod schema;
mod serve;
mod test;
mod validate;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;

use crate::diag::{Diagnostic, SourceDb, render};
use crate::validate::{Catalog, load_and_check};

pub use args::{Cli, ColorChoice, Command};

/// How a command ended, as the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything went fine.
    Ok = 0,
    /// The command ran, and its checks failed (invalid definitions).
    Failed = 1,
    /// Usage or I/O error, or a run that could not complete.
    Error = 2,
}

/// An error a command reports on stderr before exiting with [`Exit::Error`].
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Message(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Entry point of the `kpi` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let color = cli.color.enabled(std::io::stderr().is_terminal());
    crate::guard::install();
    // Reads of data catch their own panics and name the file; this is the last resort.
    let result =
        std::panic::catch_unwind(move || dispatch(cli.command, color)).unwrap_or_else(|_| {
            Err(CliError::Message(format!(
                "internal error, please report it: {}",
                crate::guard::message()
            )))
        });
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(CliError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            ExitCode::from(Exit::Error as u8)
        }
    }
}

fn dispatch(command: Command, color: bool) -> Result<Exit, CliError> {
    match command {
        Command::Validate(a) => validate::run(a, color),
        Command::List(a) => list::run(a),
        Command::Run(a) => run::run(a, color),
        Command::Explain(a) => run::explain(a, color),
        Command::Sql(a) => run::sql(a, color),
        Command::Report(a) => report::run(a, color),
        Command::Serve(a) => serve::run(a),
        Command::Gen(a) => r#gen::run(a),
        Command::Diff(a) => diff::run(a, color),
        Command::Test(a) => test::run(a, color),
        Command::Schema => schema::run(),
        Command::Cluster(c) => cluster::run(c),
    }
}

/// Loads and checks a metrics directory; one that cannot be read is a [`CliError`].
pub(crate) fn load_catalog(
    dir: &std::path::Path,
    db: &mut SourceDb,
) -> Result<(Catalog, Vec<Diagnostic>), CliError> {
    load_and_check(dir, db).map_err(|e| {
        CliError::Message(format!(
            "cannot read metrics directory {}: {e}",
            dir.display()
        ))
    })
}

/// Loads a metrics directory for a command that needs valid definitions. Definition errors
/// go to stderr and give `None`; warnings are `kpi validate`'s business and stay silent.
pub(crate) fn load_valid(
    dir: &std::path::Path,
    db: &mut SourceDb,
    color: bool,
) -> Result<Option<Catalog>, CliError> {
    let (catalog, diags) = load_catalog(dir, db)?;
    let errors: Vec<_> = diags.into_iter().filter(Diagnostic::is_error).collect();
    if errors.is_empty() {
        return Ok(Some(catalog));
    }
    eprint!("{}", render::human(&errors, db, color));
    eprintln!(
        "{}; run `kpi validate` for details",
        render::summary(&errors)
    );
    Ok(None)
}

/// Writes to stdout, buffered, mapping a broken pipe to a quiet end.
pub(crate) fn print(s: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())?;
    out.flush()?;
    Ok(())
}
