//! `[playbooks] http_allow`: the hosts `http.get` and `http.post` may reach,
//! and where a redirect may lead.

/// The hosts of `http_allow`, each with its port or any port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpAllow {
    entries: Vec<(String, Option<u16>)>,
}

impl HttpAllow {
    /// `["hooks.example.com", "127.0.0.1:8080", "[::1]:9000"]`.
    pub fn parse(list: &[String]) -> Result<HttpAllow, String> {
        let entries = list.iter().map(|e| parse_entry(e)).collect::<Result<_, _>>()?;
        Ok(HttpAllow { entries })
    }

    /// Whether a request to `host` (as a URL writes it, `[::1]` for IPv6)
    /// on `port` may go. Host names compare without regard to case, and
    /// as written: `localhost` is not `127.0.0.1`.
    pub fn allows(&self, host: &str, port: Option<u16>) -> bool {
        let host = host.to_ascii_lowercase();
        self.entries
            .iter()
            .any(|(h, p)| *h == host && p.is_none_or(|p| Some(p) == port))
    }
}

/// `host:port` for messages and hints.
pub fn show_host(host: &str, port: Option<u16>) -> String {
    match port {
        Some(p) => format!("{}:{p}", host.to_ascii_lowercase()),
        None => host.to_ascii_lowercase(),
    }
}

fn parse_entry(text: &str) -> Result<(String, Option<u16>), String> {
    let t = text.trim().to_ascii_lowercase();
    let bad = || format!("`{text}` is not a host or host:port (write no scheme, path or user)");
    if t.is_empty() || t.contains("://") || t.contains(['/', '@', '?', '#', ' ']) {
        return Err(bad());
    }
    let port = |p: &str| p.parse::<u16>().map_err(|_| bad());
    if let Some(rest) = t.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or_else(bad)?;
        let host = format!("[{addr}]");
        return match after {
            "" => Ok((host, None)),
            _ => Ok((host, Some(port(after.strip_prefix(':').ok_or_else(bad)?)?))),
        };
    }
    match t.split_once(':') {
        None => Ok((t, None)),
        // An IPv6 address needs its brackets, as in a URL.
        Some((_, p)) if p.contains(':') => Err(bad()),
        Some((h, p)) if !h.is_empty() => Ok((h.to_owned(), Some(port(p)?))),
        Some(_) => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(list: &[&str]) -> HttpAllow {
        HttpAllow::parse(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn hosts_match_by_name_and_optionally_by_port() {
        let a = allow(&["Hooks.Example.com", "127.0.0.1:8080", "[::1]:9000"]);
        assert!(a.allows("hooks.example.com", Some(443)));
        assert!(a.allows("HOOKS.example.com", Some(80)));
        assert!(a.allows("127.0.0.1", Some(8080)));
        assert!(!a.allows("127.0.0.1", Some(8081)));
        assert!(!a.allows("localhost", Some(8080)));
        assert!(a.allows("[::1]", Some(9000)));
        assert!(!a.allows("evil.example.com", Some(443)));
        assert!(!a.allows("hooks.example.com.evil.net", Some(443)));
        assert!(!allow(&[]).allows("hooks.example.com", Some(443)));
    }

    #[test]
    fn entries_that_are_urls_are_refused() {
        for bad in [
            "https://hooks.example.com",
            "hooks.example.com/path",
            "user@host",
            "host:port",
            "::1",
            "",
            ":80",
        ] {
            assert!(HttpAllow::parse(&[bad.to_owned()]).is_err(), "{bad:?} was accepted");
        }
    }
}
