//! Shell completions and the man page, generated from the clap definitions of `cli.rs`,
//! so that they cannot drift from the real command line. The hidden subcommands
//! `c42fwd completions SHELL` and `c42fwd manpage [--dir DIR]` print or write them;
//! `scripts/build-deb.sh` runs them to put both into the Debian package.

use clap::{Args, Command};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManpageArgs {
    /// Write `c42fwd.1` and one `c42fwd-SUBCOMMAND.1` page per subcommand into this
    /// directory instead of printing `c42fwd.1` on stdout.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// The completion script for `shell`, for the command `cmd`.
pub fn completions(cmd: &mut Command, shell: clap_complete::Shell) -> Vec<u8> {
    let mut out = Vec::new();
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, cmd, name, &mut out);
    out
}

/// The main man page (section 1) for `cmd`: synopsis, options and the list of
/// subcommands.
pub fn manpage(cmd: Command) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut out)?;
    Ok(out)
}

pub fn run_completions(mut cmd: Command, a: CompletionsArgs) -> ExitCode {
    write_stdout(&completions(&mut cmd, a.shell))
}

pub fn run_manpage(cmd: Command, a: ManpageArgs) -> ExitCode {
    match a.dir {
        None => match manpage(cmd) {
            Ok(page) => write_stdout(&page),
            Err(e) => {
                eprintln!("error: cannot render the man page: {e}");
                ExitCode::from(1)
            }
        },
        Some(dir) => match clap_mangen::generate_to(cmd, &dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot write man pages to {}: {e}", dir.display());
                ExitCode::from(1)
            }
        },
    }
}

fn write_stdout(bytes: &[u8]) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visible_subcommands(cmd: &Command) -> Vec<String> {
        cmd.get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.get_name().to_string())
            .collect()
    }

    #[test]
    fn man_page_lists_every_visible_subcommand_and_no_hidden_one() {
        let cmd = super::super::command();
        let names = visible_subcommands(&cmd);
        assert!(names.iter().any(|n| n == "run"), "{names:?}");
        assert!(names.iter().any(|n| n == "validate"), "{names:?}");
        let page = String::from_utf8(manpage(cmd.clone()).unwrap()).unwrap();
        assert!(page.contains(".TH c42fwd 1"), "{page}");
        for name in &names {
            // roff escapes `-` as `\-` in subcommand names.
            let roff = name.replace('-', "\\-");
            assert!(
                page.contains(&format!(".TP\nc42fwd\\-{roff}(1)\n")),
                "the SUBCOMMANDS section does not list `{name}`"
            );
        }
        assert!(
            !page.contains("c42fwd\\-manpage"),
            "hidden subcommand in the page"
        );
        assert!(
            !page.contains("c42fwd\\-completions"),
            "hidden subcommand in the page"
        );
    }

    #[test]
    fn man_pages_written_for_every_subcommand() {
        let cmd = super::super::command();
        let dir = tempfile::tempdir().unwrap();
        clap_mangen::generate_to(cmd.clone(), dir.path()).unwrap();
        assert!(dir.path().join("c42fwd.1").is_file());
        for name in visible_subcommands(&cmd) {
            let page = dir.path().join(format!("c42fwd-{name}.1"));
            assert!(page.is_file(), "{} missing", page.display());
        }
    }

    #[test]
    fn completions_for_every_shell_name_the_subcommands() {
        use clap::ValueEnum;
        let cmd = super::super::command();
        let names = visible_subcommands(&cmd);
        for shell in clap_complete::Shell::value_variants() {
            let text = String::from_utf8(completions(&mut cmd.clone(), *shell)).unwrap();
            assert!(!text.is_empty(), "{shell}");
            for name in &names {
                assert!(text.contains(name.as_str()), "{shell}: `{name}` missing");
            }
        }
    }
}
