//! The `pgtopo` binary: arguments → [`pgtopo::cli::run`] → exit code. Nothing else.

fn main() -> std::process::ExitCode {
    pgtopo::cli::run()
}
