//! `redops completions <shell>` and `redops man`: generated from the
//! command definitions themselves, so they never drift from the binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory;

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for; e.g. `redops completions bash >
    /// /etc/bash_completion.d/redops`.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub fn completions(args: CompletionsArgs) -> ExitCode {
    let mut cmd = super::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "redops", &mut std::io::stdout());
    ExitCode::SUCCESS
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write redops.1 and one page per subcommand (redops-run.1, ...) into
    /// this directory instead of printing redops(1).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

pub fn man(args: ManArgs) -> ExitCode {
    let cmd = super::Cli::command();
    let written = match &args.dir {
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout()),
        Some(dir) => std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(cmd, dir)),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("redops man: {e}");
            ExitCode::from(1)
        }
    }
}
