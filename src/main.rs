//! The `kpi` command; everything lives in the library's [`kpi::cli`].

fn main() -> std::process::ExitCode {
    kpi::cli::main()
}
