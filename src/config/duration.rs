//! Durations written the way people say them: `"5s"`, `"2m"`, `"1h30m"`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, de::Error as _};

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).map_err(D::Error::custom)
}

pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("invalid duration `{text}` ({e}); write a number and a unit, e.g. \"500ms\", \"5s\", \"2m\", \"1h\"")
    })
}

/// For `Option<Duration>` fields.
pub mod option {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map(Some).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_common_forms_and_explains_bad_ones() {
        assert_eq!(super::parse("5s").unwrap().as_secs(), 5);
        assert_eq!(super::parse("2m").unwrap().as_secs(), 120);
        assert_eq!(super::parse("1h30m").unwrap().as_secs(), 5400);
        let err = super::parse("5 minutes please").unwrap_err();
        assert!(err.contains("invalid duration"), "{err}");
    }
}
