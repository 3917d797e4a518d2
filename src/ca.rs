//! `hallpass ca init`: create the school's interception CA in the state directory.
use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

/// Arguments of `hallpass ca`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: CaCommand,
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create an ECDSA P-256 CA (key file mode 0600). Refuses to replace an existing one.
    Init {
        /// Replace an existing CA (every device must then trust the new one).
        #[arg(long)]
        force: bool,
    },
}

pub fn run(config: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let CaCommand::Init { force } = args.command;
    let snap = proxy::snapshot::load(config, 1)?;
    let state_dir = snap.resolve(&snap.config.state_dir);
    match proxy::ca::init(
        &state_dir,
        snap.policy.school().unwrap_or("hallpass"),
        force,
    ) {
        Ok(files) => {
            out!(
                "created {} and {}",
                files.cert.display(),
                files.key.display()
            );
            out!(
                "install {} on every device as a trusted root",
                files.cert.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ proxy::ca::CaError::Exists(_)) => {
            eprintln!("hallpass: {e}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}
