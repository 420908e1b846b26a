//! What the user typed: clap's derive model of every subcommand and flag.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// kpi — KPIs as YAML + SQL, computed by Apache DataFusion over CSV and Parquet.
#[derive(Debug, Parser)]
#[command(name = "kpi", version, about, long_about = None, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// When to color diagnostics (NO_COLOR is honoured by `auto`).
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check every metric definition; with --data, also against the data's schema.
    Validate(ValidateArgs),
    /// List every metric with its description, shape, source, grain, unit and dimensions.
    List(ListArgs),
}

/// When to use colors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// When writing to a terminal and NO_COLOR is unset.
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to color output going to a stream that is (or is not) a terminal.
    pub fn enabled(self, terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

/// How `kpi validate` prints its findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiagnosticFormat {
    /// Source snippets with a caret under the fault.
    Human,
    /// A JSON array, one object per finding.
    Json,
    /// GitHub Actions annotations (`::error file=…`).
    Github,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Directory of metric and model YAML files (searched recursively).
    #[arg(long, default_value = "metrics")]
    pub metrics: PathBuf,
    /// Also check tables, columns and types against this data root (no data is scanned).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Output format of the findings.
    #[arg(long, value_enum, default_value_t = DiagnosticFormat::Human)]
    pub format: DiagnosticFormat,
}

/// How `kpi list` prints the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Directory of metric and model YAML files.
    #[arg(long, default_value = "metrics")]
    pub metrics: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}
