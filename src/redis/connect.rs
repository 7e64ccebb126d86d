//! Connections to a target, with timeouts, from the connection info its
//! config gives ([`crate::config::TargetConfig::connection_info`]).

use std::time::Duration;

use redis::ConnectionInfo;

/// `host:port` of a target, for logs and labels.
pub fn address(info: &ConnectionInfo) -> String {
    info.addr().to_string()
}

/// A synchronous connection with read and write timeouts, for playbooks
/// (Rhai host functions are synchronous and run on blocking threads).
pub fn connect_blocking(info: &ConnectionInfo, timeout: Duration) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(info.clone())?;
    let conn = client.get_connection_with_timeout(timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    Ok(conn)
}

/// An async multiplexed connection for the sampler.
pub async fn connect_async(
    info: &ConnectionInfo,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(info.clone())?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(response_timeout));
    client.get_multiplexed_async_connection_with_config(&config).await
}
