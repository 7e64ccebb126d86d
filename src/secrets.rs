//! Secret values known to the process, redacted from every message we print.
//!
//! Every `${VAR}` read from the environment while loading the config is
//! registered here; error messages, logs and API output pass through
//! [`redact`] before they leave the process.

use std::fmt;
use std::sync::RwLock;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Values shorter than this are too likely to occur by chance in ordinary
/// text (a port, "yes") for blind replacement to be useful.
const MIN_SECRET_LEN: usize = 4;

pub fn register(value: &str) {
    if value.len() < MIN_SECRET_LEN {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| s == value) {
        secrets.push(value.to_owned());
        // Longest first, so a secret that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

pub fn redact(text: &str) -> String {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    let mut out = text.to_owned();
    for s in secrets.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

/// A string that never prints its value. Deserializing one registers it
/// for redaction, so a password written literally in a file is as safe in
/// logs as one read from the environment.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        register(&value);
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_values_are_redacted() {
        register("hunter2-very-secret");
        assert_eq!(redact("auth failed for hunter2-very-secret!"), "auth failed for ***!");
        assert_eq!(format!("{:?}", Secret::new("s3cr3t-value")), "Secret(***)");
    }
}
