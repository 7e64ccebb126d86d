//! A target's connection info: its URL, with the password and user from the
//! environment and its TLS trust anchor. Built here, where the target is
//! read, so that `redops check` reports a URL or CA file that cannot work
//! at the line that names it, and every client connects alike.

use std::path::Path;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, TlsCertificates};

use super::TargetConfig;

impl TargetConfig {
    /// The connection details of a self. The password never appears in any
    /// `Display` of this type or its errors.
    pub fn connection_info(&self) -> Result<ConnectionInfo, String> {
        let info = self.url.as_str().into_connection_info().map_err(|e| {
            format!(
                "target `{}`: invalid url: {}",
                self.name,
                crate::secrets::redact(&e.to_string())
            )
        })?;
        let mut settings = info.redis_settings().clone();
        // `${REDIS_PASSWORD:-}` with the variable unset means "no password":
        // sending an empty AUTH would fail against a server without one.
        if let Some(password) = self.password.as_ref().filter(|p| !p.expose().is_empty()) {
            settings = settings.set_password(password.expose());
        }
        if let Some(user) = self.username.as_ref().filter(|u| !u.is_empty()) {
            settings = settings.set_username(user);
        }
        let info = info.set_redis_settings(settings);
        match &self.tls_ca {
            Some(ca) => trusting_ca(self, info, ca),
            None => Ok(info),
        }
    }
}

/// A CA bundle is a few kilobytes; reading stops past this, so a path to
/// something endless (`/dev/zero`, a FIFO nobody writes) cannot hang the
/// engine or `redops check`.
const MAX_CA_FILE: u64 = 1024 * 1024;

fn read_ca_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut pem = Vec::new();
    std::fs::File::open(path)?.take(MAX_CA_FILE + 1).read_to_end(&mut pem)?;
    if pem.len() as u64 > MAX_CA_FILE {
        return Err(std::io::Error::other("larger than 1 MiB: not a CA certificate file"));
    }
    Ok(pem)
}

/// `info` with `ca` as its only trust anchor. The certificates travel inside
/// the connection info, so every client built from it (sampler, keyspace
/// subscriber, playbooks, backups) verifies the server against them.
fn trusting_ca(target: &TargetConfig, info: ConnectionInfo, ca: &Path) -> Result<ConnectionInfo, String> {
    let name = &target.name;
    if !matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
        return Err(format!("target `{name}`: tls_ca is set but the url is not rediss://"));
    }
    let pem = read_ca_file(ca).map_err(|e| format!("target `{name}`: cannot read tls_ca {}: {e}", ca.display()))?;
    if !pem.windows(CERT_PEM_TAG.len()).any(|w| w == CERT_PEM_TAG) {
        return Err(format!(
            "target `{name}`: tls_ca {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            ca.display()
        ));
    }
    let certificates = TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    };
    let client = redis::Client::build_with_tls(info, certificates)
        .map_err(|e| format!("target `{name}`: tls_ca {}: {e}", ca.display()))?;
    Ok(client.get_connection_info().clone())
}

const CERT_PEM_TAG: &[u8] = b"-----BEGIN CERTIFICATE-----";

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str, ca: &Path) -> TargetConfig {
        toml::from_str(&format!(
            "name = \"secure\"\nurl = \"{url}\"\ntls_ca = \"{}\"\n",
            ca.display()
        ))
        .unwrap()
    }

    #[test]
    fn a_tls_ca_that_cannot_be_used_is_an_error_naming_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let endless = std::path::PathBuf::from("/dev/zero");
        let cases = [
            (
                "redis://127.0.0.1:6379",
                &missing,
                "tls_ca is set but the url is not rediss://",
            ),
            ("rediss://127.0.0.1:6379", &missing, "cannot read tls_ca"),
            ("rediss://127.0.0.1:6379", &not_pem, "holds no PEM certificate"),
            ("rediss://127.0.0.1:6379", &endless, "larger than 1 MiB"),
        ];
        for (url, ca, expected) in cases {
            let e = target(url, ca).connection_info().unwrap_err();
            assert!(
                e.starts_with("target `secure`: ") && e.contains(expected),
                "{url} {ca:?}: {e}"
            );
        }
    }
}
