//! Sentinel awareness: the events Sentinels publish, and the group as the
//! Sentinels see it.

pub mod discovery;
pub mod events;
pub mod group;

/// Splits `host:port` (`[v6]:port` too).
pub fn parse_addr(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.trim().rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_owned(), port.parse().ok().filter(|p| *p > 0)?))
}
