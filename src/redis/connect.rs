//! Building connections to a target from its config: the URL plus the
//! password and user from the environment, with timeouts.

use std::time::Duration;

use redis::{ConnectionInfo, IntoConnectionInfo};

use crate::config::TargetConfig;

/// The connection details of a target. The password never appears in any
/// `Display` of this type or its errors.
pub fn connection_info(target: &TargetConfig) -> Result<ConnectionInfo, String> {
    let info = target.url.as_str().into_connection_info().map_err(|e| {
        format!(
            "target `{}`: invalid url: {}",
            target.name,
            crate::secrets::redact(&e.to_string())
        )
    })?;
    let mut settings = info.redis_settings().clone();
    // `${REDIS_PASSWORD:-}` with the variable unset means "no password":
    // sending an empty AUTH would fail against a server without one.
    if let Some(password) = target.password.as_ref().filter(|p| !p.expose().is_empty()) {
        settings = settings.set_password(password.expose());
    }
    if let Some(user) = target.username.as_ref().filter(|u| !u.is_empty()) {
        settings = settings.set_username(user);
    }
    Ok(info.set_redis_settings(settings))
}

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
