#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    c42fwd::cli::main()
}
