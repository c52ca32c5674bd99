//! The command-line interface (stub until the pipeline lands).

pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
