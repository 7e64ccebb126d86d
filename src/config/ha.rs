//! `[ha]`: two or three redops instances with the same config elect one
//! leader through a lease in a Redis they already watch. Off by default:
//! a single instance acts exactly as without this section.

use std::time::Duration;

use serde::Deserialize;

use super::{duration, find_key};
use crate::diagnostics::{Diagnostic, Diagnostics, SourceFile};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HaConfig {
    pub enabled: bool,
    /// The `[[target]]` or `[[sentinel]]` group whose Redis holds the
    /// lease. For a group the lease lives on the current master and follows
    /// it across a failover.
    pub lease_on: Option<String>,
    /// Every key redops writes for HA starts with this.
    pub key_prefix: String,
    /// How long the lease outlives its last renewal: a dead leader is
    /// replaced within this.
    #[serde(with = "duration")]
    pub lease_ttl: Duration,
    /// How often the leader renews; a third of `lease_ttl` when unset.
    #[serde(with = "duration::option")]
    pub renew_every: Option<Duration>,
    /// This instance's name in the lease; hostname and pid when unset.
    pub instance_id: Option<String>,
    /// The `host:port` other instances and the remote CLI are told to
    /// reach this instance's API at while it leads: `[api] listen` when
    /// unset, which is only right when they run on the same host or the
    /// API listens on an address they can reach.
    pub advertise_api: Option<String>,
}

impl Default for HaConfig {
    fn default() -> Self {
        HaConfig {
            enabled: false,
            lease_on: None,
            key_prefix: "redops:ha".into(),
            lease_ttl: Duration::from_secs(10),
            renew_every: None,
            instance_id: None,
            advertise_api: None,
        }
    }
}

/// Below this, a network hiccup or a GC-like pause of the Redis host would
/// cost the leader its lease for nothing.
const MIN_LEASE_TTL: Duration = Duration::from_secs(1);

impl HaConfig {
    pub fn renew_every(&self) -> Duration {
        self.renew_every.unwrap_or(self.lease_ttl / 3)
    }

    /// Unique per process, so that a restarted instance never mistakes the
    /// lease of its previous life for its own.
    pub fn instance_id(&self) -> String {
        self.instance_id.clone().unwrap_or_else(|| {
            let host = hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "unknown-host".into());
            format!("{host}:{}", std::process::id())
        })
    }

    /// The API address published for this instance while it leads.
    pub fn published_api(&self, api: &super::ApiConfig) -> Option<String> {
        api.enabled
            .then(|| self.advertise_api.clone().unwrap_or_else(|| api.listen.clone()))
    }

    /// `lease_on` must name a target or a group; the timings must leave the
    /// leader time to step down before its lease runs out.
    pub(super) fn validate(&self, file: &SourceFile, holders: &[&str], diags: &mut Diagnostics) {
        if !self.enabled {
            return;
        }
        match &self.lease_on {
            None => diags.push(
                Diagnostic::error(
                    file,
                    find_key(file, "enabled"),
                    "ha.lease_on is required when ha is enabled",
                )
                .with_hint("name the [[target]] or [[sentinel]] group whose Redis holds the lease"),
            ),
            Some(name) if !holders.contains(&name.as_str()) => {
                let mut d = Diagnostic::error(
                    file,
                    find_key(file, "lease_on"),
                    format!("ha.lease_on: no target or sentinel group named `{name}`"),
                );
                if let Some(best) = super::document::closest(name, holders) {
                    d = d.with_hint(format!("did you mean `{best}`?"));
                }
                diags.push(d);
            }
            Some(_) => {}
        }
        if self.lease_ttl < MIN_LEASE_TTL {
            diags.push(
                Diagnostic::error(file, find_key(file, "lease_ttl"), "ha.lease_ttl must be at least 1s")
                    .with_hint("lease_ttl = \"10s\""),
            );
        }
        if self.renew_every() * 2 > self.lease_ttl || self.renew_every().is_zero() {
            diags.push(
                Diagnostic::error(
                    file,
                    find_key(file, "renew_every"),
                    "ha.renew_every must be more than zero and at most half of lease_ttl",
                )
                .with_hint("leave it unset for a third of lease_ttl"),
            );
        }
        if let Some(addr) = &self.advertise_api
            && !is_host_port(addr)
        {
            diags.push(
                Diagnostic::error(
                    file,
                    find_key(file, "advertise_api"),
                    format!("ha.advertise_api `{addr}` is not host:port"),
                )
                .with_hint("the address the other instances reach this API at, e.g. \"redops-a.internal:9187\""),
            );
        }
        if self.key_prefix.is_empty() {
            diags.push(Diagnostic::error(
                file,
                find_key(file, "key_prefix"),
                "ha.key_prefix must not be empty",
            ));
        }
    }
}

/// `host:port` with a port number, the host a name or an address
/// (`[::1]:9187` for IPv6); no scheme, no path.
fn is_host_port(addr: &str) -> bool {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return false;
    };
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    !host.is_empty() && !host.contains(['/', ' ', '@']) && port.parse::<u16>().is_ok_and(|p| p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn check(ha: &str) -> Result<Config, String> {
        let text = format!("[[target]]\nname = \"cache\"\nurl = \"redis://127.0.0.1:1/0\"\n\n[ha]\n{ha}");
        let file = SourceFile::new("redops.toml", text);
        let mut diags = Diagnostics::default();
        let config = Config::parse(&file, &mut diags);
        match config {
            Some(c) if !diags.has_errors() => Ok(c),
            _ => Err(diags.render()),
        }
    }

    #[test]
    fn a_lease_on_a_known_target_is_accepted_with_its_timings() {
        let config = check("enabled = true\nlease_on = \"cache\"\nlease_ttl = \"6s\"\n").unwrap();
        assert!(config.ha.enabled);
        assert_eq!(config.ha.renew_every(), Duration::from_secs(2));
    }

    #[test]
    fn bad_ha_settings_are_each_reported() {
        let err = check("enabled = true\nlease_on = \"cahce\"\n").unwrap_err();
        assert!(err.contains("no target or sentinel group named `cahce`"), "{err}");
        assert!(err.contains("did you mean `cache`?"), "{err}");
        let err = check("enabled = true\n").unwrap_err();
        assert!(err.contains("ha.lease_on is required"), "{err}");
        let err =
            check("enabled = true\nlease_on = \"cache\"\nlease_ttl = \"3s\"\nrenew_every = \"2s\"\n").unwrap_err();
        assert!(err.contains("at most half of lease_ttl"), "{err}");
        let err = check("enabled = true\nlease_on = \"cache\"\nleader_ttl = \"3s\"\n").unwrap_err();
        assert!(err.contains("leader_ttl"), "{err}");
        // Off, nothing is required.
        assert!(check("enabled = false\n").is_ok());
    }

    #[test]
    fn the_published_api_is_the_advertised_address_or_the_listen_one() {
        let err = check("enabled = true\nlease_on = \"cache\"\nadvertise_api = \"http://a:9187/\"\n").unwrap_err();
        assert!(
            err.contains("ha.advertise_api `http://a:9187/` is not host:port"),
            "{err}"
        );
        for bad in ["a", "a:", ":9187", "a:0", "a:99999"] {
            assert!(!is_host_port(bad), "{bad}");
        }
        for good in ["a:9187", "10.0.0.5:9187", "[::1]:9187", "redops-a.internal:1"] {
            assert!(is_host_port(good), "{good}");
        }
        let mut config = check("enabled = true\nlease_on = \"cache\"\nadvertise_api = \"redops-a:9187\"\n").unwrap();
        assert_eq!(config.ha.published_api(&config.api).as_deref(), Some("redops-a:9187"));
        config.ha.advertise_api = None;
        assert_eq!(config.ha.published_api(&config.api), Some(config.api.listen.clone()));
        config.api.enabled = false;
        assert_eq!(config.ha.published_api(&config.api), None);
    }

    #[test]
    fn defaults_are_off_with_a_ten_second_lease_renewed_every_third() {
        let ha = HaConfig::default();
        assert!(!ha.enabled);
        assert_eq!(ha.lease_ttl, Duration::from_secs(10));
        assert_eq!(ha.renew_every(), Duration::from_secs(10) / 3);
        assert_eq!(ha.key_prefix, "redops:ha");
        let id = ha.instance_id();
        assert!(id.ends_with(&format!(":{}", std::process::id())), "{id}");
    }
}
