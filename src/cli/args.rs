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
    /// Compute metrics for every period of a range over a data root.
    Run(RunArgs),
    /// Show the SQL and the plans a metric runs.
    Explain(ExplainArgs),
    /// Print a run as one SQL statement for another engine (PostgreSQL, DuckDB, …).
    Sql(SqlArgs),
    /// Write the run as one self-contained HTML page: a chart per metric and the numbers.
    Report(ReportArgs),
    /// Serve the metrics over HTTP: a JSON/CSV/Arrow API and report pages (loopback by
    /// default), reloading the definitions when they change.
    Serve(ServeArgs),
    /// Generate a deterministic CRM data set (all 12 tables) at any scale.
    Gen(GenArgs),
    /// Compare two metric folders: metrics added, removed and changed, with SQL diffs.
    Diff(DiffArgs),
    /// Run the metric unit tests in `tests/` folders beside the metrics.
    Test(TestArgs),
    /// Print the JSON Schema of metric and model files, for editors (see README).
    Schema,
    /// Run a Ballista scheduler or executor that knows kpi's functions, for
    /// `kpi run --engine ballista` (needs a kpi built with `--features cluster`).
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

/// `kpi cluster`'s processes.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// A scheduler: takes runs' plans from clients and hands their tasks to executors.
    Scheduler(SchedulerArgs),
    /// An executor: registers with a scheduler and runs the tasks it is given.
    Executor(ExecutorArgs),
}

/// `kpi cluster scheduler`'s arguments.
#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:50050")]
    pub bind: std::net::SocketAddr,
    /// The host name executors and clients reach this scheduler by.
    #[arg(long, default_value = "localhost")]
    pub external_host: String,
    /// Seconds without a heartbeat after which an executor is taken for dead and its
    /// tasks are run again elsewhere.
    #[arg(long, value_name = "SECS", default_value_t = 180)]
    pub executor_timeout: u64,
}

/// `kpi cluster executor`'s arguments.
#[derive(Debug, Args)]
pub struct ExecutorArgs {
    /// The scheduler: HOST:PORT.
    #[arg(long, default_value = "localhost:50050")]
    pub scheduler: String,
    /// The host to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_host: String,
    /// The host name the scheduler and clients reach this executor by (default: the
    /// address the scheduler sees).
    #[arg(long)]
    pub external_host: Option<String>,
    /// The Arrow Flight port, which serves results and shuffle data.
    #[arg(long, default_value_t = 50051)]
    pub port: u16,
    /// The gRPC port the scheduler sends tasks to.
    #[arg(long, default_value_t = 50052)]
    pub grpc_port: u16,
    /// Tasks run at once (default: the machine's cores).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub concurrent_tasks: usize,
    /// Where shuffle files go (default: a folder under the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Seconds between heartbeats to the scheduler.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub heartbeat: u64,
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
    /// A versioned JSON document (schema in docs/diagnostics.md).
    Json,
    /// GitHub Actions annotations (`::error file=…`).
    Github,
    /// SARIF 2.1.0, for code-scanning uploads.
    Sarif,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Directory of metric and model YAML files (searched recursively).
    #[arg(long, default_value = "metrics")]
    pub metrics: PathBuf,
    /// Also check tables, columns and types against this data root, a folder or an
    /// object-store URL (no data is scanned).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Output format of the findings.
    #[arg(long, value_enum, default_value_t = DiagnosticFormat::Human)]
    pub format: DiagnosticFormat,
    /// Treat warnings as errors: report them as errors and exit 1 if there are any.
    #[arg(long)]
    pub deny_warnings: bool,
}

/// How `kpi diff` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    /// A summary, then unified diffs of the compiled SQL.
    Human,
    /// A pull-request comment: a summary table and a collapsed section per metric.
    Markdown,
    /// The changes as JSON.
    Json,
}

/// `kpi diff BASE HEAD` or `kpi diff --base GIT_REF [HEAD]`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The base metrics folder; with --base, the head folder instead.
    #[arg(value_name = "BASE")]
    pub first: Option<PathBuf>,
    /// The head metrics folder (default with --base: `metrics`).
    #[arg(value_name = "HEAD")]
    pub second: Option<PathBuf>,
    /// Take the base from this git revision (the same folder as HEAD, in that commit).
    #[arg(long = "base", value_name = "GIT_REF")]
    pub base_ref: Option<String>,
    /// Data root to compile against; when given, values are computed and compared too.
    /// Without it, `sample_data` supplies the table schemas and nothing is computed.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub periods: PeriodArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DiffFormat::Human)]
    pub format: DiffFormat,
}

/// How `kpi test` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TestFormat {
    /// A line per case; the expected and actual rows of a failed case side by side.
    Human,
    /// The human report, plus GitHub Actions annotations on failed cases.
    Github,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Run only cases whose name or file path contains this text.
    pub filter: Option<String>,
    /// Directory of metric and model YAML files; tests are the YAML files in its `tests/`
    /// folders.
    #[arg(long, default_value = "metrics")]
    pub metrics: PathBuf,
    /// Report format.
    #[arg(long, value_enum, default_value_t = TestFormat::Human)]
    pub format: TestFormat,
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

/// What to compute, shared by `kpi run` and `kpi explain`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Directory of metric and model YAML files.
    #[arg(long, default_value = "metrics")]
    pub metrics: PathBuf,
    /// Data root: one CSV/Parquet file or folder per table; a folder, or an object-store
    /// URL (s3://bucket/prefix, gs://, az://, http(s)://) with credentials from the
    /// environment (AWS_ACCESS_KEY_ID, AWS_REGION, AWS_ENDPOINT_URL, …).
    #[arg(long, default_value = "sample_data")]
    pub data: PathBuf,
    #[command(flatten)]
    pub periods: PeriodArgs,
    /// Slice by a dimension (repeatable); columns follow the period in this order.
    #[arg(long = "by", value_name = "DIM")]
    pub by: Vec<String>,
    /// A SQL predicate on dimensions, e.g. "segment = 'smb'".
    #[arg(long = "where", value_name = "SQL")]
    pub filter: Option<String>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// How the plans run, shared by `kpi run` and `kpi explain`.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Parallel partitions of every plan (default: the machine's cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Bound the memory of query execution, e.g. 4GiB or 512MB; sorts and aggregates
    /// spill to disk past it, and a plan that still cannot fit fails naming the limit.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory_limit: Option<usize>,
    /// Directory for spill files (default: the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    pub spill_dir: Option<PathBuf>,
    /// Where the plans run (Ballista needs a kpi built with `--features cluster`).
    #[arg(long, value_enum, default_value_t = EngineKind::Local)]
    pub engine: EngineKind,
    /// The Ballista scheduler of --engine ballista: df://HOST:PORT.
    #[arg(long, value_name = "URL", required_if_eq("engine", "ballista"))]
    pub scheduler: Option<String>,
    /// Fail the run, writing nothing, when one plan takes longer than SECS (a cluster
    /// that lost an executor can wait for ever; see README, Scaling out).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub plan_timeout: Option<u64>,
}

/// Where `--engine` runs the plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineKind {
    /// In this process.
    Local,
    /// On a Ballista cluster: a scheduler (--scheduler) and its executors, started with
    /// `kpi cluster scheduler` and `kpi cluster executor`.
    Ballista,
    /// On a Ballista scheduler and executor started inside this process, for demos.
    BallistaStandalone,
}

impl EngineArgs {
    pub(crate) fn engine(&self) -> crate::compile::Engine {
        crate::compile::Engine {
            threads: self.threads.map(usize::from),
            memory_limit: self.memory_limit,
            spill_dir: self.spill_dir.clone(),
            plan_timeout: self.plan_timeout.map(std::time::Duration::from_secs),
            cluster: match self.engine {
                EngineKind::Local => None,
                EngineKind::Ballista => Some(crate::cluster::Target::Remote(
                    self.scheduler.clone().unwrap_or_default(),
                )),
                EngineKind::BallistaStandalone => Some(crate::cluster::Target::Standalone),
            },
            portable: false,
        }
    }
}

/// A size in bytes: a number with an optional unit (B, KB, MB, GB, TB in powers of 1000;
/// KiB, MiB, GiB, TiB in powers of 1024).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 4GiB, 512MB)"))?;
    let mul: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{s}` (use B, KB, MB, GB, KiB, MiB, GiB)"
            ));
        }
    };
    let bytes = n * mul;
    if !(bytes >= 1.0 && bytes < usize::MAX as f64) {
        return Err(format!("`{s}` is not a usable memory size"));
    }
    Ok(bytes as usize)
}

/// Which periods to compute, shared by `kpi run`, `kpi explain` and `kpi diff`.
#[derive(Debug, Args)]
pub struct PeriodArgs {
    /// First instant, inclusive (YYYY-MM-DD or RFC 3339); default: the data's first period.
    #[arg(long)]
    pub from: Option<String>,
    /// Last instant, exclusive (YYYY-MM-DD or RFC 3339); default: after the data's last period.
    #[arg(long)]
    pub to: Option<String>,
    /// Period length (default: the metrics' own grain, month unless they say otherwise).
    #[arg(long, value_enum)]
    pub grain: Option<crate::spec::Grain>,
    /// IANA time zone for period boundaries (default UTC), e.g. Europe/Madrid.
    #[arg(long)]
    pub tz: Option<String>,
}

impl QueryArgs {
    /// The run request for `metrics` with these options.
    pub fn request(
        &self,
        metrics: Vec<String>,
        compare: Option<crate::exec::Compare>,
    ) -> crate::exec::RunRequest {
        crate::exec::RunRequest {
            metrics,
            from: self.periods.from.clone(),
            to: self.periods.to.clone(),
            grain: self.periods.grain,
            by: self.by.clone(),
            filter: self.filter.clone(),
            tz: self.periods.tz.clone(),
            compare,
            engine: self.engine.engine(),
        }
    }
}

/// What a run computes and over which periods: shared by `kpi run` and `kpi report`.
#[derive(Debug, Args)]
pub struct Selection {
    /// Metrics to compute, in output column order (default: every metric).
    #[arg(value_name = "METRIC")]
    pub metric_names: Vec<String>,
    #[command(flatten)]
    pub query: QueryArgs,
    /// Add each metric's value in the compared period and the change in % (a report
    /// overlays the compared period, dashed).
    #[arg(long, value_enum)]
    pub compare: Option<crate::exec::Compare>,
}

/// `kpi run`'s arguments: the CLI contract outside tools rely on.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Output format (default: table on a terminal, csv otherwise).
    #[arg(long, value_enum)]
    pub format: Option<crate::output::Format>,
    /// Write to FILE atomically instead of stdout (a folder, with --partition-by);
    /// FILE may be an object-store URL (s3://bucket/results.parquet).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Split the results into one file per period under the --out folder,
    /// `period=YYYY-MM-DD/part-0.EXT`: each replaced atomically, other periods' files kept.
    #[arg(long, value_enum, requires = "out")]
    pub partition_by: Option<crate::output::PartitionBy>,
}

/// `kpi report`'s arguments: `kpi run`'s selection, and the page to write.
#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// The HTML file to write, atomically; it needs nothing else to be read offline.
    #[arg(long, value_name = "FILE", default_value = "report.html")]
    pub out: PathBuf,
    /// The page's title.
    #[arg(long, default_value = "KPI report")]
    pub title: String,
}

/// `kpi sql`'s arguments: `kpi run`'s selection, and the dialect to write.
#[derive(Debug, Args)]
pub struct SqlArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// The SQL dialect to write; PostgreSQL's and DuckDB's output is run on their engines
    /// by the tests.
    #[arg(long, value_enum, default_value_t = crate::exec::SqlDialect::Generic)]
    pub dialect: crate::exec::SqlDialect,
}

/// `kpi serve`'s arguments.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory of metric and model YAML files; watched for changes.
    #[arg(long, default_value = "metrics")]
    pub metrics: PathBuf,
    /// Data root: one CSV/Parquet file or folder per table; a folder or an object-store
    /// URL (s3://, gs://, az://, http(s)://).
    #[arg(long, default_value = "sample_data")]
    pub data: PathBuf,
    /// Address to listen on; port 0 picks a free one (the address is printed on stderr).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: std::net::SocketAddr,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// `kpi explain`'s arguments.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The metrics to explain, as `kpi run` would compute them together (default: every
    /// metric).
    #[arg(value_name = "METRIC")]
    pub metric_names: Vec<String>,
    #[command(flatten)]
    pub query: QueryArgs,
    /// Also show the physical plan.
    #[arg(long)]
    pub physical: bool,
    /// Run the plans and show rows and time per operator.
    #[arg(long)]
    pub analyze: bool,
}

/// `kpi gen`'s arguments.
#[derive(Debug, Args)]
pub struct GenArgs {
    /// Output directory (a data root); existing tables in it are replaced.
    pub out: PathBuf,
    /// Size: 1 is a few thousand rows over two years; 1000 is millions.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Seed of the generator: the same seed gives the same data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Layout of the tables.
    #[arg(long, value_enum, default_value_t = crate::generate::Layout::Csv)]
    pub format: crate::generate::Layout,
    /// First day of data, inclusive.
    #[arg(long, default_value = "2024-01-01")]
    pub from: chrono::NaiveDate,
    /// Last day of data, exclusive.
    #[arg(long, default_value = "2026-01-01")]
    pub to: chrono::NaiveDate,
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_size("4GiB"), Ok(4 * 1024 * 1024 * 1024));
        assert_eq!(parse_size("512MB"), Ok(512_000_000));
        assert_eq!(parse_size("1.5 kib"), Ok(1536));
        assert_eq!(parse_size("2048"), Ok(2048));
        assert!(parse_size("0").is_err());
        assert!(parse_size("GiB").is_err());
        assert!(
            parse_size("3 XB")
                .unwrap_err()
                .contains("unknown size unit")
        );
    }
}
