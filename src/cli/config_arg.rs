//! `--config`, `--lab` and `--lab-dir`: which config file a command reads.
//!
//! Every command that reads the engine's config flattens [`ConfigArg`] and
//! asks [`ConfigArg::resolve`] once, so they all find a running lab the same
//! way, in this order:
//!
//! 1. `--lab`: the running lab's config, or an error naming `redops lab up`;
//! 2. `--config FILE`, then `$REDOPS_CONFIG`: a choice the user made always
//!    wins over a lab that happens to run;
//! 3. a running lab in `--lab-dir` (`$REDOPS_LAB_DIR`, default `state/lab`),
//!    with a one-line note on stderr, so `redops lab up` followed by
//!    `redops sentinel validate` looks at the lab;
//! 4. `config/redops.toml`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{EXIT_FAILED, EXIT_USAGE};
use crate::config::Config;
use crate::lab::process::LabError;
use crate::lab::topology::{self, DEFAULT_LAB_DIR};

pub const DEFAULT_CONFIG: &str = "config/redops.toml";
/// Read by hand rather than by clap: clap would count it as `--config` and
/// refuse it next to `--lab`, which should simply win over it.
pub const CONFIG_ENV: &str = "REDOPS_CONFIG";

#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArg {
    /// The engine's config file [env: REDOPS_CONFIG]. Without either: the
    /// running lab's config if a lab runs, else config/redops.toml.
    #[arg(long, short, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Use the running lab's config (`redops lab up` starts a lab; `run
    /// --lab` starts it itself); wins over $REDOPS_CONFIG.
    #[arg(long, global = true, conflicts_with = "config")]
    pub lab: bool,
    /// Where the lab lives, for `--lab` and for finding a running lab.
    #[arg(long, global = true, env = "REDOPS_LAB_DIR", default_value = DEFAULT_LAB_DIR, value_name = "DIR")]
    pub lab_dir: PathBuf,
}

/// Where the config file came from, for messages that depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    Flag,
    Env,
    /// `--lab`.
    Lab,
    /// Nothing chosen, and a lab runs.
    RunningLab,
    /// Nothing chosen and no lab runs: [`DEFAULT_CONFIG`].
    Default,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedConfig {
    pub path: PathBuf,
    pub source: ConfigSource,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigArgError {
    #[error("--lab: no lab is running in {dir}: start one with `{start}`, or pass --config FILE")]
    NoLab { dir: PathBuf, start: String },

    #[error("--lab: {0}")]
    Lab(#[from] LabError),
}

impl ConfigArg {
    /// The config file this command reads. Prints the note about a running
    /// lab, or the error (exit 2).
    pub fn resolve(&self) -> Result<ResolvedConfig, ExitCode> {
        let chosen = self.choose(std::env::var_os(CONFIG_ENV), topology::running_config);
        match chosen {
            Ok((resolved, note)) => {
                if let Some(note) = note {
                    eprintln!("redops: {note}");
                }
                if resolved.source == ConfigSource::Default && !resolved.path.is_file() {
                    // Said before the load error, which only names the file.
                    eprintln!(
                        "redops: no --config given, ${CONFIG_ENV} is unset and no lab runs in {}: \
                         pass --config FILE, or start a lab with `{}`",
                        self.lab_dir.display(),
                        super::lab::lab_command(&self.lab_dir, "up")
                    );
                }
                Ok(resolved)
            }
            Err(e) => {
                eprintln!("redops: {e}");
                Err(ExitCode::from(EXIT_USAGE))
            }
        }
    }

    /// Resolves and loads the config; prints its diagnostics (exit 2) when
    /// it does not load.
    pub fn load(&self) -> Result<(Config, ResolvedConfig), ExitCode> {
        let resolved = self.resolve()?;
        match Config::load(&resolved.path) {
            Ok(config) => Ok((config, resolved)),
            Err(e) => {
                eprintln!("{}", e.diagnostics.render());
                Err(ExitCode::from(EXIT_USAGE))
            }
        }
    }

    /// As [`ConfigArg::resolve`], but `--lab` brings the lab up first
    /// instead of requiring one: `redops run --lab`.
    pub fn resolve_starting_lab(&self) -> Result<ResolvedConfig, ExitCode> {
        if !self.lab {
            return self.resolve();
        }
        eprintln!("redops: bringing the lab up in {}", self.lab_dir.display());
        match topology::ensure_up(&self.lab_dir) {
            Ok(path) => Ok(ResolvedConfig {
                path,
                source: ConfigSource::Lab,
            }),
            Err(e) => {
                eprintln!("redops: cannot bring the lab up: {e}");
                Err(ExitCode::from(EXIT_FAILED))
            }
        }
    }

    /// The decision, apart from the process environment and the filesystem
    /// so that it can be tested: `env` is `$REDOPS_CONFIG`, `running` finds
    /// the config of a running lab in a directory. Returns the note to print.
    fn choose(
        &self,
        env: Option<OsString>,
        running: impl FnOnce(&Path) -> Result<Option<PathBuf>, LabError>,
    ) -> Result<(ResolvedConfig, Option<String>), ConfigArgError> {
        let resolved = |path: PathBuf, source| ResolvedConfig { path, source };
        if self.lab {
            return match running(&self.lab_dir)? {
                Some(path) => Ok((resolved(path, ConfigSource::Lab), None)),
                None => Err(ConfigArgError::NoLab {
                    dir: self.lab_dir.clone(),
                    start: super::lab::lab_command(&self.lab_dir, "up"),
                }),
            };
        }
        if let Some(path) = &self.config {
            return Ok((resolved(path.clone(), ConfigSource::Flag), None));
        }
        if let Some(path) = env.filter(|v| !v.is_empty()) {
            return Ok((resolved(path.into(), ConfigSource::Env), None));
        }
        let default = resolved(PathBuf::from(DEFAULT_CONFIG), ConfigSource::Default);
        match running(&self.lab_dir) {
            Ok(Some(path)) => {
                let note = format!(
                    "using the running lab's config {}; pass --config to choose",
                    path.display()
                );
                Ok((resolved(path, ConfigSource::RunningLab), Some(note)))
            }
            Ok(None) => Ok((default, None)),
            // Nobody asked for the lab: a broken one must not stop a command
            // on the default config, but it must not vanish silently either.
            Err(e) => {
                let note = format!("not using the lab in {}: {e}", self.lab_dir.display());
                Ok((default, Some(note)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg(config: Option<&str>, lab: bool) -> ConfigArg {
        ConfigArg {
            config: config.map(PathBuf::from),
            lab,
            lab_dir: PathBuf::from(DEFAULT_LAB_DIR),
        }
    }

    fn lab_running(dir: &Path) -> Result<Option<PathBuf>, LabError> {
        Ok(Some(dir.join(topology::CONFIG_FILE)))
    }

    fn no_lab(_: &Path) -> Result<Option<PathBuf>, LabError> {
        Ok(None)
    }

    fn broken_lab(dir: &Path) -> Result<Option<PathBuf>, LabError> {
        let path = dir.join(topology::STATE_FILE);
        Err(LabError::io(format!("Failed to read {}", path.display()))(
            std::io::Error::other("permission denied"),
        ))
    }

    #[test]
    fn a_running_lab_is_used_when_nothing_is_chosen_and_says_so() {
        let (resolved, note) = arg(None, false).choose(None, lab_running).unwrap();
        assert_eq!(resolved.path, Path::new("state/lab/redops.toml"));
        assert_eq!(resolved.source, ConfigSource::RunningLab);
        assert_eq!(
            note.as_deref(),
            Some("using the running lab's config state/lab/redops.toml; pass --config to choose")
        );
    }

    #[test]
    fn an_explicit_config_wins_over_a_running_lab() {
        let (resolved, note) = arg(Some("/etc/redops/redops.toml"), false)
            .choose(Some("/from/env.toml".into()), lab_running)
            .unwrap();
        assert_eq!(resolved.path, Path::new("/etc/redops/redops.toml"));
        assert_eq!(resolved.source, ConfigSource::Flag);
        assert_eq!(note, None);

        let (resolved, note) = arg(None, false)
            .choose(Some("/from/env.toml".into()), lab_running)
            .unwrap();
        assert_eq!(resolved.path, Path::new("/from/env.toml"));
        assert_eq!(resolved.source, ConfigSource::Env);
        assert_eq!(note, None);
    }

    #[test]
    fn without_a_lab_the_default_config_is_used_quietly() {
        let (resolved, note) = arg(None, false).choose(Some("".into()), no_lab).unwrap();
        assert_eq!(resolved.path, Path::new(DEFAULT_CONFIG));
        assert_eq!(resolved.source, ConfigSource::Default);
        assert_eq!(note, None);
    }

    #[test]
    fn lab_wins_over_the_environment_and_fails_clearly_without_a_lab() {
        let (resolved, _) = arg(None, true)
            .choose(Some("/from/env.toml".into()), lab_running)
            .unwrap();
        assert_eq!(resolved.source, ConfigSource::Lab);
        assert_eq!(resolved.path, Path::new("state/lab/redops.toml"));

        let error = arg(None, true).choose(None, no_lab).unwrap_err();
        assert_eq!(
            error.to_string(),
            "--lab: no lab is running in state/lab: start one with `redops lab up`, or pass --config FILE"
        );
        let mut elsewhere = arg(None, true);
        elsewhere.lab_dir = PathBuf::from("/tmp/mylab");
        let error = elsewhere.choose(None, no_lab).unwrap_err();
        assert!(
            error.to_string().contains("`redops lab up --dir /tmp/mylab`"),
            "{error}"
        );
    }

    #[test]
    fn a_broken_lab_is_an_error_with_lab_and_a_note_without() {
        let error = arg(None, true).choose(None, broken_lab).unwrap_err();
        assert!(error.to_string().contains("permission denied"), "{error}");

        let (resolved, note) = arg(None, false).choose(None, broken_lab).unwrap();
        assert_eq!(resolved.source, ConfigSource::Default);
        let note = note.expect("a note names the broken lab");
        assert!(
            note.starts_with("not using the lab in state/lab: ") && note.contains("permission denied"),
            "{note}"
        );
    }
}
