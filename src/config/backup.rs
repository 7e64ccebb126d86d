//! `[backup]`: how backups are compressed, who can read them, and how hard
//! a logical backup may push the server. Archives live in
//! `<state_dir>/backups/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{duration, find_key};
use crate::diagnostics::{Diagnostic, Diagnostics, SourceFile};
use crate::secrets::Secret;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// zstd level, 1 (fastest) to 19 (smallest).
    pub compression_level: i32,
    /// age public keys (`age1…`) every archive is encrypted to.
    pub age_recipients: Vec<String>,
    /// Encrypts to a passphrase instead, e.g. `"${REDOPS_BACKUP_PASSPHRASE}"`.
    /// age cannot mix a passphrase with recipients.
    pub age_passphrase: Option<Secret>,
    /// The age identity (`AGE-SECRET-KEY-1…` file) that opens archives
    /// encrypted to `age_recipients`: needed to verify and restore them.
    pub age_identity_file: Option<PathBuf>,
    /// Makes creating an unencrypted backup an error.
    pub require_encryption: bool,
    /// Keys per pipelined round trip of a logical backup or restore.
    pub batch_size: usize,
    /// How long a socket may stay silent before a backup or restore gives up.
    #[serde(with = "duration")]
    pub io_timeout: Duration,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            compression_level: 3,
            age_recipients: Vec::new(),
            age_passphrase: None,
            age_identity_file: None,
            require_encryption: false,
            batch_size: 1000,
            io_timeout: Duration::from_secs(60),
        }
    }
}

impl BackupConfig {
    /// The passphrase, unless it is unset or empty (`${VAR:-}` with VAR unset).
    pub fn passphrase(&self) -> Option<&Secret> {
        self.age_passphrase.as_ref().filter(|p| !p.expose().is_empty())
    }

    pub fn encrypts(&self) -> bool {
        !self.age_recipients.is_empty() || self.passphrase().is_some()
    }

    pub(super) fn resolve_paths(&mut self, base: &Path) {
        if let Some(path) = &mut self.age_identity_file
            && path.is_relative()
        {
            *path = base.join(&*path);
        }
    }

    pub(super) fn validate(&self, file: &SourceFile, diags: &mut Diagnostics) {
        if !(1..=19).contains(&self.compression_level) {
            diags.push(
                Diagnostic::error(
                    file,
                    find_key(file, "compression_level"),
                    format!(
                        "backup.compression_level must be 1 to 19, not {}",
                        self.compression_level
                    ),
                )
                .with_hint("3 is fast and small enough for most data"),
            );
        }
        #[cfg(not(feature = "encryption"))]
        if self.encrypts() || self.age_identity_file.is_some() {
            let key = if self.age_recipients.is_empty() && self.passphrase().is_none() {
                "age_identity_file"
            } else if self.age_recipients.is_empty() {
                "age_passphrase"
            } else {
                "age_recipients"
            };
            diags.push(
                Diagnostic::error(
                    file,
                    find_key(file, key),
                    format!("backup.{key}: this redops was built without encryption (cargo feature `encryption`)"),
                )
                .with_hint("use a build with default features, or remove the age_* settings"),
            );
        }
        #[cfg(feature = "encryption")]
        for recipient in &self.age_recipients {
            if recipient.parse::<age::x25519::Recipient>().is_err() {
                diags.push(
                    Diagnostic::error(
                        file,
                        find_key(file, "age_recipients"),
                        format!("backup.age_recipients: `{recipient}` is not an age public key"),
                    )
                    .with_hint("age-keygen prints the public key of a new identity: age1…"),
                );
            }
        }
        if !self.age_recipients.is_empty() && self.passphrase().is_some() {
            diags.push(
                Diagnostic::error(
                    file,
                    find_key(file, "age_passphrase"),
                    "backup: age cannot encrypt to both a passphrase and recipients",
                )
                .with_hint("keep age_recipients (keys) or age_passphrase, not both"),
            );
        }
        if self.require_encryption && !self.encrypts() {
            diags.push(
                Diagnostic::error(
                    file,
                    find_key(file, "require_encryption"),
                    "backup.require_encryption is set but no age_recipients or age_passphrase is configured",
                )
                .with_hint("age_recipients = [\"age1…\"] or age_passphrase = \"${REDOPS_BACKUP_PASSPHRASE}\""),
            );
        }
        if !(1..=100_000).contains(&self.batch_size) {
            diags.push(Diagnostic::error(
                file,
                find_key(file, "batch_size"),
                format!("backup.batch_size must be 1 to 100000, not {}", self.batch_size),
            ));
        }
        if self.io_timeout < Duration::from_secs(1) {
            diags.push(
                Diagnostic::error(
                    file,
                    find_key(file, "io_timeout"),
                    "backup.io_timeout must be at least 1s",
                )
                .with_hint("a server writing a large snapshot can be silent for a while: e.g. \"60s\""),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::diagnostics::{Diagnostics, SourceFile};

    fn parse(text: &str) -> (Option<Config>, String) {
        let file = SourceFile::new("/etc/redops/redops.toml", text);
        let mut diags = Diagnostics::default();
        let config = Config::parse(&file, &mut diags);
        (config.filter(|_| !diags.has_errors()), diags.render())
    }

    #[cfg(feature = "encryption")]
    #[test]
    fn defaults_and_a_full_section_load() {
        let (config, _) = parse("");
        let b = config.unwrap().backup;
        assert_eq!((b.compression_level, b.batch_size, b.encrypts()), (3, 1000, false));

        let key = age::x25519::Identity::generate().to_public().to_string();
        let (config, report) = parse(&format!(
            "[backup]\nage_recipients = [\"{key}\"]\nage_identity_file = \"keys/backup.key\"\n\
             require_encryption = true\ncompression_level = 9\nio_timeout = \"2m\"\n"
        ));
        let b = config.unwrap_or_else(|| panic!("{report}")).backup;
        assert!(b.encrypts());
        assert_eq!(
            b.age_identity_file.unwrap().to_str(),
            Some("/etc/redops/keys/backup.key")
        );
        assert_eq!(b.io_timeout.as_secs(), 120);
    }

    #[cfg(feature = "encryption")]
    #[test]
    fn every_problem_is_reported_at_its_key() {
        let (config, report) = parse(
            "[backup]\ncompression_level = 30\nage_recipients = [\"not-a-key\"]\n\
             age_passphrase = \"correct horse battery\"\nbatch_size = 0\n",
        );
        assert!(config.is_none());
        for expected in [
            "compression_level must be 1 to 19",
            "`not-a-key` is not an age public key",
            "both a passphrase and recipients",
            "batch_size must be 1 to 100000",
        ] {
            assert!(report.contains(expected), "missing {expected:?} in:\n{report}");
        }
        assert!(report.contains("redops.toml:2:"), "{report}");

        let (config, report) = parse("[backup]\nrequire_encryption = true\n");
        assert!(config.is_none());
        assert!(report.contains("no age_recipients or age_passphrase"), "{report}");
        let (config, report) = parse("[backup]\ncompresion_level = 3\n");
        assert!(config.is_none(), "unknown keys are rejected");
        assert!(report.contains("compresion_level"), "{report}");
    }

    #[cfg(not(feature = "encryption"))]
    #[test]
    fn a_build_without_encryption_refuses_age_settings_at_their_key() {
        let (config, _) = parse("[backup]\ncompression_level = 9\n");
        assert!(config.is_some(), "no age settings: loads");
        for (text, key) in [
            ("[backup]\nage_recipients = [\"age1x\"]\n", "age_recipients"),
            ("[backup]\nage_passphrase = \"correct horse\"\n", "age_passphrase"),
            (
                "[backup]\nage_identity_file = \"keys/backup.key\"\n",
                "age_identity_file",
            ),
        ] {
            let (config, report) = parse(text);
            assert!(config.is_none(), "{text}");
            assert!(report.contains("built without encryption"), "{report}");
            assert!(report.contains(&format!("backup.{key}")), "{report}");
            assert!(report.contains("redops.toml:2:1"), "{report}");
        }
    }
}
