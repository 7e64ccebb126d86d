//! `[exec.NAME]`: the programs playbooks may run with `exec(NAME, args)`.
//! Nothing else runs: a playbook names an entry, never a path, and no shell
//! ever sees the arguments. The program sees only the environment its entry
//! gives it, never redops's own (which holds the config's secrets).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::duration;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecConfig {
    /// The program, e.g. `/usr/bin/python3`; run directly, never by a shell.
    pub command: PathBuf,
    /// Arguments that come first; the playbook's are appended.
    #[serde(default)]
    pub args: Vec<String>,
    /// The program is killed when it runs longer, or when the run's deadline comes first.
    #[serde(default = "default_exec_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// The program's whole environment, e.g. `{ DJANGO_SETTINGS_MODULE =
    /// "app.settings", API_TOKEN = "${WARM_TOKEN}" }`; `PATH` is
    /// [`DEFAULT_PATH`] unless set here.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// `PATH` of a program whose entry does not set one.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

fn default_exec_timeout() -> Duration {
    Duration::from_secs(60)
}
