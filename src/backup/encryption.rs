//! age encryption of archives: sealing to recipients or a passphrase, and
//! the keys that open them.
//!
//! age and its ~70 crates sit behind the default cargo feature
//! `encryption`. A build without it (`cargo build --no-default-features`)
//! has the same types, empty: [`Encryption`] has no value, so no archive is
//! ever sealed with it, and a config or an archive that needs age gets
//! [`ArchiveError::WithoutEncryption`] instead.

#[cfg(feature = "encryption")]
pub use with_age::{Encrypted, Encryption, Keys};
#[cfg(not(feature = "encryption"))]
pub use without_age::{Encrypted, Encryption, Keys};

#[cfg(feature = "encryption")]
mod with_age {
    use std::fs::File;
    use std::io::{BufReader, Read, Write};
    use std::path::Path;
    use std::str::FromStr;

    use age::secrecy::SecretString;

    use crate::backup::archive::ArchiveError;
    use crate::config::BackupConfig;

    #[derive(Clone)]
    pub enum Encryption {
        Recipients(Vec<age::x25519::Recipient>),
        Passphrase(SecretString),
    }

    pub type Encrypted<W> = age::stream::StreamWriter<W>;

    impl Encryption {
        /// The encryption the config asks for. Recipients were checked when
        /// the config loaded; a bad one here is still reported, not skipped.
        pub fn from_config(config: &BackupConfig) -> Result<Option<Encryption>, ArchiveError> {
            if let Some(p) = config.passphrase() {
                return Ok(Some(Encryption::Passphrase(SecretString::from(p.expose().to_owned()))));
            }
            if config.age_recipients.is_empty() {
                return Ok(None);
            }
            let recipients = config
                .age_recipients
                .iter()
                .map(|r| {
                    age::x25519::Recipient::from_str(r)
                        .map_err(|e| ArchiveError::Encrypt(format!("`{r}` is not an age public key: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(Encryption::Recipients(recipients)))
        }

        /// Starts encrypting into `out`, which `path` names in errors.
        pub fn wrap<W: Write>(&self, out: W, path: &Path) -> Result<Encrypted<W>, ArchiveError> {
            let encryptor = match self {
                Encryption::Passphrase(p) => age::Encryptor::with_user_passphrase(p.clone()),
                Encryption::Recipients(rs) => {
                    age::Encryptor::with_recipients(rs.iter().map(|r| r as &dyn age::Recipient))
                        .map_err(|e| ArchiveError::Encrypt(e.to_string()))?
                }
            };
            encryptor.wrap_output(out).map_err(|source| ArchiveError::Io {
                context: "cannot write",
                path: path.to_owned(),
                source,
            })
        }
    }

    /// The keys that open encrypted archives.
    #[derive(Default)]
    pub struct Keys {
        identities: Vec<Box<dyn age::Identity + Send + Sync>>,
        problems: Vec<String>,
    }

    impl Keys {
        /// The identity file and the passphrase of the config, whichever are
        /// set. A missing identity file is remembered and reported when an
        /// archive needs it, so unencrypted archives stay usable.
        pub fn from_config(config: &BackupConfig) -> Keys {
            let mut keys = Keys::default();
            if let Some(path) = &config.age_identity_file {
                match age::IdentityFile::from_file(path.to_string_lossy().into_owned()).map(|f| f.into_identities()) {
                    Ok(Ok(ids)) => keys.identities.extend(ids),
                    Ok(Err(e)) => keys.problems.push(format!("{}: {e}", path.display())),
                    Err(e) => keys.problems.push(format!("cannot read {}: {e}", path.display())),
                }
            }
            if let Some(p) = config.passphrase() {
                let identity = age::scrypt::Identity::new(SecretString::from(p.expose().to_owned()));
                keys.identities.push(Box::new(identity));
            }
            keys
        }

        /// A test's keys.
        #[cfg(test)]
        pub fn with_identity(identity: age::x25519::Identity) -> Keys {
            Keys {
                identities: vec![Box::new(identity)],
                problems: Vec::new(),
            }
        }

        /// The payload of the encrypted archive `file` at `path`.
        pub fn decrypt(&self, file: BufReader<File>, path: &Path) -> Result<Box<dyn Read>, ArchiveError> {
            if self.identities.is_empty() {
                if let Some(problem) = self.problems.first() {
                    return Err(ArchiveError::Decrypt {
                        path: path.to_owned(),
                        why: format!("the age identity file cannot be used: {problem}"),
                    });
                }
                return Err(ArchiveError::NoIdentity { path: path.to_owned() });
            }
            let decrypt_error = |e: age::DecryptError| ArchiveError::Decrypt {
                path: path.to_owned(),
                why: match e {
                    age::DecryptError::NoMatchingKeys => {
                        "none of the configured keys opens it (wrong identity file or passphrase)".to_owned()
                    }
                    other => other.to_string(),
                },
            };
            let decryptor = age::Decryptor::new_buffered(file).map_err(decrypt_error)?;
            let reader = decryptor
                .decrypt(self.identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
                .map_err(decrypt_error)?;
            Ok(Box::new(reader))
        }
    }
}

#[cfg(not(feature = "encryption"))]
mod without_age {
    use std::convert::Infallible;
    use std::fs::File;
    use std::io::{self, BufReader, Read, Write};
    use std::marker::PhantomData;
    use std::path::Path;

    use crate::backup::archive::ArchiveError;
    use crate::config::BackupConfig;

    /// No value: this build never encrypts.
    #[derive(Clone)]
    pub enum Encryption {}

    /// No value either, since there is no [`Encryption`] to make one.
    pub struct Encrypted<W>(Infallible, PhantomData<W>);

    impl Encryption {
        pub fn from_config(config: &BackupConfig) -> Result<Option<Encryption>, ArchiveError> {
            if config.encrypts() {
                return Err(ArchiveError::WithoutEncryption);
            }
            Ok(None)
        }

        pub fn wrap<W: Write>(&self, _: W, _: &Path) -> Result<Encrypted<W>, ArchiveError> {
            match *self {}
        }
    }

    impl<W> Encrypted<W> {
        pub fn finish(self) -> io::Result<W> {
            match self.0 {}
        }
    }

    impl<W> Write for Encrypted<W> {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            match self.0 {}
        }

        fn flush(&mut self) -> io::Result<()> {
            match self.0 {}
        }
    }

    #[derive(Default)]
    pub struct Keys;

    impl Keys {
        pub fn from_config(_: &BackupConfig) -> Keys {
            Keys
        }

        pub fn decrypt(&self, _: BufReader<File>, _: &Path) -> Result<Box<dyn Read>, ArchiveError> {
            Err(ArchiveError::WithoutEncryption)
        }
    }
}
