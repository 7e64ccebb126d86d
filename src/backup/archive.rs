//! Archive files: a payload (an RDB, or a logical dump) zstd-compressed and
//! age-encrypted as configured, so that `age -d -i KEY FILE | zstd -d` opens
//! one with stock tools.
//!
//! An archive is written 0600 under a hidden temporary name, synced, and
//! renamed into place only once complete: a crash leaves no file that looks
//! like a backup. The SHA-256 of the file as written goes into the catalog.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::encryption::Encrypted;
pub use super::encryption::{Encryption, Keys};
use crate::config::BackupConfig;

/// Bytes buffered before a write reaches the file.
const WRITE_BUFFER: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot encrypt: {0}")]
    Encrypt(String),
    #[error("cannot decrypt {}: {why}", path.display())]
    Decrypt { path: PathBuf, why: String },
    #[error(
        "{} is encrypted but no key to open it is configured: set [backup] age_identity_file \
         (for age_recipients) or age_passphrase",
        path.display()
    )]
    NoIdentity { path: PathBuf },
    #[error(
        "this redops was built without encryption (cargo feature `encryption`): it cannot seal or open \
         age-encrypted backups; use a build with default features, or remove age_recipients and age_passphrase"
    )]
    WithoutEncryption,
}

/// How an archive is sealed.
#[derive(Clone)]
pub struct Sealing {
    /// zstd level, or `None` to store the payload as is.
    pub compression: Option<i32>,
    pub encryption: Option<Encryption>,
}

impl Sealing {
    /// The sealing the config asks for.
    pub fn from_config(config: &BackupConfig, compress: bool) -> Result<Sealing, ArchiveError> {
        Ok(Sealing {
            compression: compress.then_some(config.compression_level),
            encryption: Encryption::from_config(config)?,
        })
    }

    /// The file name extension after the payload's own (`.zst`, `.zst.age`).
    pub fn extension(&self) -> &'static str {
        match (self.compression.is_some(), self.encryption.is_some()) {
            (false, false) => "",
            (true, false) => ".zst",
            (false, true) => ".age",
            (true, true) => ".zst.age",
        }
    }
}

/// Counts and hashes the bytes that reach the file.
struct HashingFile {
    file: BufWriter<File>,
    hasher: Sha256,
    bytes: u64,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

type AgeWriter = Encrypted<HashingFile>;

enum Layers {
    Plain(HashingFile),
    Zstd(zstd::Encoder<'static, HashingFile>),
    Age(AgeWriter),
    ZstdAge(zstd::Encoder<'static, AgeWriter>),
}

/// An archive being written. Dropping it unfinished removes the partial file.
pub struct ArchiveWriter {
    layers: Option<Layers>,
    partial: PathBuf,
    path: PathBuf,
}

/// A complete archive on disk.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub path: PathBuf,
    pub size: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
}

impl ArchiveWriter {
    /// Starts `path` (which must not exist) in a directory made 0700.
    pub fn create(path: &Path, sealing: &Sealing) -> Result<ArchiveWriter, ArchiveError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let io = |context, source| ArchiveError::Io {
            context,
            path: path.to_owned(),
            source,
        };
        create_private_dir(dir).map_err(|e| io("cannot create the backup directory for", e))?;
        let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        let partial = dir.join(format!(".{name}.partial"));
        if path.exists() {
            return Err(io(
                "refusing to overwrite",
                io::Error::new(io::ErrorKind::AlreadyExists, "the file exists"),
            ));
        }
        let file = create_private_file(&partial).map_err(|e| io("cannot create", e))?;
        let hashing = HashingFile {
            file: BufWriter::with_capacity(WRITE_BUFFER, file),
            hasher: Sha256::new(),
            bytes: 0,
        };
        let mut writer = ArchiveWriter {
            layers: None,
            partial,
            path: path.to_owned(),
        };
        let layers = match &sealing.encryption {
            None => match sealing.compression {
                None => Layers::Plain(hashing),
                Some(level) => Layers::Zstd(zstd_encoder(hashing, level).map_err(|e| io("cannot compress", e))?),
            },
            Some(encryption) => {
                let age = encryption.wrap(hashing, path)?;
                match sealing.compression {
                    None => Layers::Age(age),
                    Some(level) => Layers::ZstdAge(zstd_encoder(age, level).map_err(|e| io("cannot compress", e))?),
                }
            }
        };
        writer.layers = Some(layers);
        Ok(writer)
    }

    /// Closes every layer, syncs the file and renames it into place.
    pub fn finish(mut self) -> Result<Sealed, ArchiveError> {
        let io = |context, source| ArchiveError::Io {
            context,
            path: self.path.clone(),
            source,
        };
        let layers = self.layers.take().expect("layers exist until finish");
        let hashing = match layers {
            Layers::Plain(h) => Ok(h),
            Layers::Zstd(z) => z.finish(),
            Layers::Age(a) => a.finish(),
            Layers::ZstdAge(z) => z.finish().and_then(|a| a.finish()),
        }
        .map_err(|e| io("cannot finish", e))?;
        let HashingFile { file, hasher, bytes } = hashing;
        let file = file.into_inner().map_err(|e| io("cannot write", e.into_error()))?;
        file.sync_all().map_err(|e| io("cannot sync", e))?;
        drop(file);
        fs::rename(&self.partial, &self.path).map_err(|e| io("cannot rename the finished archive to", e))?;
        if let Some(dir) = self.path.parent()
            && let Ok(d) = File::open(dir)
        {
            // The rename is durable only once the directory is synced.
            let _ = d.sync_all();
        }
        Ok(Sealed {
            path: self.path.clone(),
            size: bytes,
            sha256: hex::encode(hasher.finalize()),
        })
    }
}

impl Write for ArchiveWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.layers.as_mut().expect("layers exist until finish") {
            Layers::Plain(w) => w.write(buf),
            Layers::Zstd(w) => w.write(buf),
            Layers::Age(w) => w.write(buf),
            Layers::ZstdAge(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self.layers.as_mut().expect("layers exist until finish") {
            Layers::Plain(w) => w.write_all(buf),
            Layers::Zstd(w) => w.write_all(buf),
            Layers::Age(w) => w.write_all(buf),
            Layers::ZstdAge(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.layers.as_mut().expect("layers exist until finish") {
            Layers::Plain(w) => w.flush(),
            Layers::Zstd(w) => w.flush(),
            Layers::Age(w) => w.flush(),
            Layers::ZstdAge(w) => w.flush(),
        }
    }
}

impl Drop for ArchiveWriter {
    fn drop(&mut self) {
        if self.layers.is_some() {
            let _ = fs::remove_file(&self.partial);
        }
    }
}

fn zstd_encoder<W: Write>(w: W, level: i32) -> io::Result<zstd::Encoder<'static, W>> {
    let mut encoder = zstd::Encoder::new(w, level)?;
    // A frame checksum: a corrupt archive fails in zstd already, with a
    // message saying so, before the payload's own checks.
    encoder.include_checksum(true)?;
    Ok(encoder)
}

/// Opens an archive for reading its payload.
pub fn open(path: &Path, compressed: bool, encrypted: bool, keys: &Keys) -> Result<Box<dyn Read>, ArchiveError> {
    let file = File::open(path).map_err(|source| ArchiveError::Io {
        context: "cannot open",
        path: path.to_owned(),
        source,
    })?;
    let file = BufReader::with_capacity(WRITE_BUFFER, file);
    let reader: Box<dyn Read> = if encrypted {
        keys.decrypt(file, path)?
    } else {
        Box::new(file)
    };
    if compressed {
        let decoder = zstd::Decoder::new(reader).map_err(|source| ArchiveError::Io {
            context: "cannot decompress",
            path: path.to_owned(),
            source,
        })?;
        Ok(Box::new(decoder))
    } else {
        Ok(reader)
    }
}

/// SHA-256 (hex) and size of a file.
pub fn file_sha256(path: &Path) -> io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; WRITE_BUFFER];
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn create_private_file(path: &Path) -> io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    // A stale partial file from a crash is not worth keeping.
    if path.exists() {
        fs::remove_file(path)?;
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealing(compress: bool, encryption: Option<Encryption>) -> Sealing {
        Sealing {
            compression: compress.then_some(3),
            encryption,
        }
    }

    fn round_trip(s: &Sealing, keys: &Keys) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backups").join(format!("a.bin{}", s.extension()));
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 97) as u8).collect();
        let mut w = ArchiveWriter::create(&path, s).unwrap();
        w.write_all(&payload).unwrap();
        let sealed = w.finish().unwrap();
        assert_eq!(file_sha256(&path).unwrap(), (sealed.sha256.clone(), sealed.size));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let mut out = Vec::new();
        open(&path, s.compression.is_some(), s.encryption.is_some(), keys)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, payload);
        out
    }

    #[test]
    fn every_sealing_round_trips() {
        for compress in [false, true] {
            round_trip(&sealing(compress, None), &Keys::default());
        }
        #[cfg(feature = "encryption")]
        {
            let identity = age::x25519::Identity::generate();
            let keys = Keys::with_identity(identity.clone());
            for compress in [false, true] {
                round_trip(
                    &sealing(compress, Some(Encryption::Recipients(vec![identity.to_public()]))),
                    &keys,
                );
            }
        }
    }

    /// Truncated and corrupted archives of every sealing: opening and
    /// checking them fails with an error, never a panic.
    #[cfg(feature = "encryption")]
    #[test]
    fn hostile_archives_fail_cleanly() {
        use crate::backup::{Silent, logical, rdb};
        let identity = age::x25519::Identity::generate();
        let keys = Keys::with_identity(identity.clone());
        let header = logical::Header {
            version: logical::VERSION,
            created_ms: 1,
            source: "t".into(),
            redis_version: "7".into(),
        };
        let mut payload = logical::Writer::new(Vec::new(), &header).unwrap();
        payload.db(0).unwrap();
        for i in 0..50u8 {
            let mut dump = vec![0, 1, i, 10, 0];
            let crc = crate::backup::crc64::crc64(&dump);
            dump.extend_from_slice(&crc.to_le_bytes());
            payload.key(&[b'k', i], None, &dump).unwrap();
        }
        let payload = payload.finish().unwrap().0;
        let dir = tempfile::tempdir().unwrap();
        for (n, (compress, encrypt)) in [(false, false), (true, false), (false, true), (true, true)]
            .into_iter()
            .enumerate()
        {
            let s = sealing(
                compress,
                encrypt.then(|| Encryption::Recipients(vec![identity.to_public()])),
            );
            let path = dir.path().join(format!("a{n}"));
            let mut w = ArchiveWriter::create(&path, &s).unwrap();
            w.write_all(&payload).unwrap();
            w.finish().unwrap();
            let good = fs::read(&path).unwrap();
            let bad = dir.path().join(format!("bad{n}"));
            let try_all = |bytes: &[u8]| {
                fs::write(&bad, bytes).unwrap();
                let Ok(reader) = open(&bad, compress, encrypt, &keys) else {
                    return false;
                };
                let logical_ok = logical::check(reader, &mut Silent).is_ok();
                let reader = open(&bad, compress, encrypt, &keys);
                let _ = reader.map(|r| rdb::check(r, &mut Silent));
                logical_ok
            };
            assert!(try_all(&good), "sealing {n}: the intact archive must check");
            let step = (good.len() / 200).max(1);
            for len in (0..good.len()).step_by(step) {
                assert!(!try_all(&good[..len]), "sealing {n}: truncated to {len} passed");
            }
            for i in (0..good.len()).step_by(step) {
                let mut flipped = good.clone();
                flipped[i] ^= 0x10;
                assert!(!try_all(&flipped), "sealing {n}: flipped byte {i} passed");
            }
        }
    }

    #[test]
    fn a_dropped_writer_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.rdb.zst");
        let mut w = ArchiveWriter::create(&path, &sealing(true, None)).unwrap();
        w.write_all(b"half a backup").unwrap();
        drop(w);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[cfg(feature = "encryption")]
    #[test]
    fn an_encrypted_archive_without_keys_says_what_to_configure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.age");
        let identity = age::x25519::Identity::generate();
        let s = sealing(false, Some(Encryption::Recipients(vec![identity.to_public()])));
        let mut w = ArchiveWriter::create(&path, &s).unwrap();
        w.write_all(b"secret").unwrap();
        w.finish().unwrap();
        let err = open(&path, false, true, &Keys::default()).err().unwrap().to_string();
        assert!(err.contains("age_identity_file"), "{err}");
        let other = Keys::with_identity(age::x25519::Identity::generate());
        let err = open(&path, false, true, &other).err().unwrap().to_string();
        assert!(err.contains("none of the configured keys"), "{err}");
    }
}
