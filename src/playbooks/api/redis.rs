//! `redis.cmd([...])`, `redis.info(section)` and the named helpers
//! (`scan`, `config_get`, `bigkeys`, ...): commands against the run's
//! target, each through [`run_command`] and so under the command policy. In a dry run, reads are sent (a
//! playbook decides from them) and writes are recorded, not sent.

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};

use crate::playbooks::context::{self, RunState};
use crate::policy;

#[derive(Debug, Clone, Copy)]
pub struct RedisApi;

type RhaiResult = Result<Dynamic, Box<EvalAltResult>>;

/// Arguments longer than this are shortened in the audit trail.
const MAX_AUDIT_ARG: usize = 120;

pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<RedisApi>("Redis");
    engine.register_fn("cmd", |_: &mut RedisApi, args: Array| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        execute(&args)
    });
    engine.register_fn("cmd_on", |_: &mut RedisApi, node: &str, args: Array| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        execute_on(node, &args)
    });
    engine.register_fn("info", |_: &mut RedisApi| info(""));
    engine.register_fn("info", |_: &mut RedisApi, section: &str| info(section));
    engine.register_fn("config_get", |_: &mut RedisApi, name: &str| config_get(name));
    engine.register_fn("config_set", |_: &mut RedisApi, name: &str, value: Dynamic| {
        execute(&strings(["CONFIG", "SET", name, &value.to_string()]))
    });
    engine.register_fn("scan", |_: &mut RedisApi, pattern: &str| scan(pattern, 100, ""));
    engine.register_fn("scan", |_: &mut RedisApi, pattern: &str, count: i64| {
        scan(pattern, count, "")
    });
    engine.register_fn("scan", |_: &mut RedisApi, pattern: &str, count: i64, kind: &str| {
        scan(pattern, count, kind)
    });
    engine.register_fn("memory_usage", |_: &mut RedisApi, key: &str| {
        execute(&strings(["MEMORY", "USAGE", key]))
    });
    engine.register_fn("ttl", |_: &mut RedisApi, key: &str| execute(&strings(["TTL", key])));
    engine.register_fn("expire", |_: &mut RedisApi, key: &str, secs: i64| {
        execute(&strings(["EXPIRE", key, &secs.to_string()]))
    });
    engine.register_fn("unlink", |_: &mut RedisApi, key: &str| {
        execute(&strings(["UNLINK", key]))
    });
    engine.register_fn("slowlog", |_: &mut RedisApi, n: i64| slowlog(n));
    engine.register_fn("latency_latest", |_: &mut RedisApi| latency_latest());
    engine.register_fn("client_list", |_: &mut RedisApi| client_list());
    engine.register_fn("bigkeys", |_: &mut RedisApi, options: Map| bigkeys(&options));
    engine.register_fn("bigkeys", |_: &mut RedisApi| bigkeys(&Map::new()));
}

fn strings<const N: usize>(args: [&str; N]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

/// `redis.config_get("maxmemory*")` → `#{maxmemory: "0", ...}`.
fn config_get(name: &str) -> RhaiResult {
    let reply = execute(&strings(["CONFIG", "GET", name]))?;
    if reply.is_map() {
        return Ok(reply);
    }
    let items = reply.into_array().map_err(|t| format!("CONFIG GET returned a {t}"))?;
    let map: Map = items
        .chunks(2)
        .filter(|pair| pair.len() == 2)
        .map(|pair| (pair[0].to_string().into(), pair[1].clone()))
        .collect();
    Ok(map.into())
}

/// Keys matching `pattern`, by SCAN (never KEYS), at most `[playbooks] scan_limit`.
fn scan(pattern: &str, count: i64, kind: &str) -> RhaiResult {
    let limit = context::with_run(|run| run.ctx.host.scan_limit)?;
    let keys = scan_keys(pattern, count, kind, limit)?;
    Ok(keys.into_iter().map(Dynamic::from).collect::<Array>().into())
}

fn scan_keys(pattern: &str, count: i64, kind: &str, limit: usize) -> Result<Vec<String>, Box<EvalAltResult>> {
    let count = count.clamp(1, 10_000).to_string();
    let mut cursor = "0".to_owned();
    let mut keys = Vec::new();
    loop {
        let mut args = strings(["SCAN", &cursor, "MATCH", pattern, "COUNT", &count]);
        if !kind.is_empty() {
            args.extend(strings(["TYPE", kind]));
        }
        let reply = execute(&args)?
            .into_array()
            .map_err(|t| format!("SCAN returned a {t}"))?;
        let [next, batch] = <[Dynamic; 2]>::try_from(reply).map_err(|_| "SCAN returned no cursor")?;
        for key in batch.into_array().map_err(|t| format!("SCAN returned keys as a {t}"))? {
            if keys.len() >= limit {
                api_log(
                    "warn",
                    &format!("scan stopped at {limit} keys ([playbooks] scan_limit); more match `{pattern}`"),
                );
                return Ok(keys);
            }
            keys.push(key.to_string());
        }
        cursor = next.to_string();
        if cursor == "0" {
            return Ok(keys);
        }
        if context::past_deadline() {
            return Err("redis.scan: the run's deadline passed during the scan".into());
        }
    }
}

fn api_log(level: &str, msg: &str) {
    super::log::write(level, msg);
}

/// `SLOWLOG GET n` as maps: `#{id, time, duration_us, command, client, client_name}`.
fn slowlog(n: i64) -> RhaiResult {
    let reply = execute(&strings(["SLOWLOG", "GET", &n.max(0).to_string()]))?;
    let entries = reply.into_array().map_err(|t| format!("SLOWLOG GET returned a {t}"))?;
    let out: Array = entries
        .into_iter()
        .filter_map(|e| e.into_array().ok())
        .map(|f| {
            let field = |i: usize| f.get(i).cloned().unwrap_or(Dynamic::UNIT);
            let command = field(3)
                .into_array()
                .map(|a| a.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" "))
                .unwrap_or_default();
            let mut m = Map::new();
            m.insert("id".into(), field(0));
            m.insert("time".into(), field(1));
            m.insert("duration_us".into(), field(2));
            m.insert("command".into(), audit_line(&[command]).into());
            m.insert("client".into(), field(4));
            m.insert("client_name".into(), field(5));
            Dynamic::from_map(m)
        })
        .collect();
    Ok(out.into())
}

/// `LATENCY LATEST` as maps: `#{event, time, latest_ms, max_ms}`.
fn latency_latest() -> RhaiResult {
    let reply = execute(&strings(["LATENCY", "LATEST"]))?;
    let entries = reply
        .into_array()
        .map_err(|t| format!("LATENCY LATEST returned a {t}"))?;
    let out: Array = entries
        .into_iter()
        .filter_map(|e| e.into_array().ok())
        .map(|f| {
            let field = |i: usize| f.get(i).cloned().unwrap_or(Dynamic::UNIT);
            let mut m = Map::new();
            m.insert("event".into(), field(0));
            m.insert("time".into(), field(1));
            m.insert("latest_ms".into(), field(2));
            m.insert("max_ms".into(), field(3));
            Dynamic::from_map(m)
        })
        .collect();
    Ok(out.into())
}

/// `CLIENT LIST` as one map per connection; numbers are numbers.
fn client_list() -> RhaiResult {
    let reply = execute(&strings(["CLIENT", "LIST"]))?;
    let text = reply.into_string().map_err(|t| format!("CLIENT LIST returned a {t}"))?;
    Ok(parse_client_list(&text).into())
}

fn parse_client_list(text: &str) -> Array {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let m: Map = line
                .split_ascii_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.into(), scalar(v)))
                .collect();
            Dynamic::from_map(m)
        })
        .collect()
}

/// `redis.bigkeys(#{sample: 1000, top: 10})`: the biggest keys by MEMORY
/// USAGE among the first `sample` keys SCAN returns, as `#{key, type, bytes}`.
fn bigkeys(options: &Map) -> RhaiResult {
    let int = |name: &str, default: i64| options.get(name).and_then(|v| v.as_int().ok()).unwrap_or(default);
    let sample = int("sample", 1000).max(1) as usize;
    let top = int("top", 10).max(0) as usize;
    let limit = context::with_run(|run| run.ctx.host.scan_limit)?.min(sample);
    let mut sized = Vec::new();
    for key in scan_keys("*", 1000, "", limit)? {
        // A key that expired between SCAN and MEMORY USAGE answers nil.
        if let Ok(bytes) = execute(&strings(["MEMORY", "USAGE", &key]))?.as_int() {
            sized.push((bytes, key));
        }
    }
    sized.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    sized.truncate(top);
    let mut out = Array::new();
    for (bytes, key) in sized {
        let kind = execute(&strings(["TYPE", &key]))?.to_string();
        let mut m = Map::new();
        m.insert("key".into(), key.into());
        m.insert("type".into(), kind.into());
        m.insert("bytes".into(), bytes.into());
        out.push(Dynamic::from_map(m));
    }
    Ok(out.into())
}

/// `redis.info("memory")` → a map of the section's fields; numbers are numbers.
fn info(section: &str) -> RhaiResult {
    let mut args = vec!["INFO".to_owned()];
    if !section.is_empty() {
        args.push(section.to_owned());
    }
    let reply = execute(&args)?;
    let text = reply.into_string().map_err(|t| format!("INFO returned a {t}"))?;
    let parsed = crate::redis::info::parse(&text);
    let map: Map = parsed.fields().map(|(k, v)| (k.into(), scalar(v))).collect();
    Ok(map.into())
}

fn scalar(v: &str) -> Dynamic {
    if let Ok(i) = v.parse::<i64>() {
        i.into()
    } else if let Ok(f) = v.parse::<f64>() {
        f.into()
    } else {
        v.to_owned().into()
    }
}

pub fn execute(args: &[String]) -> RhaiResult {
    context::with_run(|run| run_command(run, args, None))?
}

/// `redis.cmd_on(addr, [...])`: a command sent to one node of the run's
/// cluster, whatever its key.
fn execute_on(node: &str, args: &[String]) -> RhaiResult {
    context::with_run(|run| {
        if run.cluster.is_none() {
            return Err(format!(
                "redis.cmd_on: target `{}` is not a cluster; use redis.cmd([...])",
                run.ctx.target
            )
            .into());
        }
        run_command(run, args, Some(node))
    })?
}

fn run_command(run: &mut RunState, args: &[String], on: Option<&str>) -> RhaiResult {
    let mut line = audit_line(args);
    // The policy decides here, where the command is sent, so no helper,
    // dry run or transaction goes around it.
    let allowed = run.ctx.policy.check(args).and_then(|allowed| match allowed.maxmemory {
        Some(bytes) => maxmemory_within_bounds(run, bytes, on).map(|()| allowed),
        None => Ok(allowed),
    });
    let allowed = match allowed {
        Ok(a) => a,
        Err(denied) => {
            // Denied, not merely skipped by a dry run: the audit says so.
            run.record("redis", line, false, format!("denied: {denied}"));
            return Err(denied.to_string().into());
        }
    };
    if run.ctx.dry_run && !allowed.read_only {
        run.record("redis", line, true, "not sent (dry run)".into());
        return Ok(Dynamic::from("DRY-RUN"));
    }
    // Under [ha], a write goes out only while the lease is still ours.
    if !allowed.read_only
        && let Err(fenced) = run.fence("redis", &line)
    {
        return Err(format!("redis {}: {fenced}", args[0].to_ascii_uppercase()).into());
    }
    let (reply, node) = send(run, args, on);
    if let Some(node) = node {
        // On a cluster the audit says which node each call ran on.
        line = format!("{line} (on {node})");
    }
    match (allowed.command.as_str(), &reply) {
        ("MULTI", Ok(_)) => run.in_multi = true,
        // Even an EXEC that fails (EXECABORT) ends the transaction.
        ("EXEC" | "DISCARD", _) => run.in_multi = false,
        _ => {}
    }
    match reply {
        Ok(v) => {
            if !allowed.read_only {
                run.record("redis", line, false, "ok".into());
            }
            Ok(to_dynamic(v))
        }
        Err(Failure::Connect(error)) => {
            run.record("redis", line, false, format!("failed: cannot connect: {error}"));
            Err(format!("redis: cannot connect to target `{}`: {error}", run.ctx.target).into())
        }
        Err(Failure::NoConnection) => {
            Err(format!("redis: target `{}` has no connection in this run", run.ctx.target).into())
        }
        Err(Failure::NoRoute(error)) => {
            run.record("redis", line, false, format!("failed: {error}"));
            Err(format!("redis {}: {error}", args[0].to_ascii_uppercase()).into())
        }
        Err(Failure::Command(error)) => {
            run.record("redis", line, false, format!("failed: {error}"));
            Err(format!("redis {}: {error}", args[0].to_ascii_uppercase()).into())
        }
    }
}

/// `CONFIG SET maxmemory` is allowed within bounds of the memory the server
/// uses now, so it is read now, just before the command goes.
fn maxmemory_within_bounds(run: &mut RunState, bytes: u64, on: Option<&str>) -> Result<(), policy::PolicyDenied> {
    let policy = run.ctx.policy.clone();
    let unreadable = |why: String| policy.maxmemory_unchecked(&why);
    if run.in_multi {
        return Err(unreadable(
            "inside MULTI the memory in use cannot be read; set maxmemory outside the transaction".into(),
        ));
    }
    let info = match send(run, &["INFO".to_owned(), "memory".to_owned()], on).0 {
        Ok(::redis::Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
        Ok(::redis::Value::VerbatimString { text, .. }) => text,
        Ok(other) => return Err(unreadable(format!("INFO memory answered {other:?}"))),
        Err(Failure::Connect(e) | Failure::Command(e) | Failure::NoRoute(e)) => {
            return Err(unreadable(format!("INFO memory failed: {e}")));
        }
        Err(Failure::NoConnection) => return Err(unreadable("the run has no connection".into())),
    };
    let info = crate::redis::info::parse(&info);
    let Some(used) = info.get_u64("used_memory") else {
        return Err(unreadable("INFO memory has no used_memory".into()));
    };
    let total = info.get_u64("total_system_memory").unwrap_or(0);
    policy.check_maxmemory(bytes, used, total)
}

enum Failure {
    NoConnection,
    /// Redacted.
    Connect(String),
    /// The server's error or the connection's (redacted), or a scripted one.
    Command(String),
    /// On a cluster: no node to send it to.
    NoRoute(String),
}

/// Sends a command the policy allowed: to the target (on a cluster, to the
/// node its key or `on` names, which is returned too), or to the scripted
/// world of `redops test`.
fn send(run: &mut RunState, args: &[String], on: Option<&str>) -> (Result<::redis::Value, Failure>, Option<String>) {
    let timeout = run.ctx.command_timeout.min(run.remaining());
    // A cluster's route asks the scripted world itself, when there is one.
    if let Some(route) = run.cluster.as_mut() {
        use crate::playbooks::cluster_route::RouteError;
        let (reply, node) = route.send(args, on, timeout);
        let reply = reply.map_err(|e| match e {
            RouteError::NoRoute(e) => Failure::NoRoute(e),
            RouteError::Connect(e) => Failure::Connect(e),
            RouteError::Command(e) => Failure::Command(e),
        });
        return (reply, node);
    }
    if let Some(world) = run.ctx.scripted.clone() {
        return (world.redis(args).map_err(Failure::Command), None);
    }
    (send_to_target(run, args, timeout), None)
}

fn send_to_target(
    run: &mut RunState,
    args: &[String],
    timeout: std::time::Duration,
) -> Result<::redis::Value, Failure> {
    if run.conn.is_none() {
        let Some(info) = &run.ctx.connection else {
            return Err(Failure::NoConnection);
        };
        match crate::redis::connect::connect_blocking(info, timeout) {
            Ok(c) => run.conn = Some(c),
            Err(e) => return Err(Failure::Connect(crate::secrets::redact(&e.to_string()))),
        }
    }
    let conn = run.conn.as_mut().expect("connected above");
    let _ = conn.set_read_timeout(Some(timeout));
    let mut cmd = ::redis::cmd(&args[0]);
    for a in &args[1..] {
        cmd.arg(a);
    }
    cmd.query::<::redis::Value>(conn).map_err(|e| {
        if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
            // A new connection is outside any transaction.
            run.conn = None;
            run.in_multi = false;
        }
        Failure::Command(crate::secrets::redact(&e.to_string()))
    })
}

fn audit_line(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.len() > MAX_AUDIT_ARG {
                let cut = (0..=MAX_AUDIT_ARG).rev().find(|i| a.is_char_boundary(*i)).unwrap_or(0);
                format!("{}…", &a[..cut])
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn to_dynamic(v: ::redis::Value) -> Dynamic {
    use ::redis::Value as V;
    match v {
        V::Nil => Dynamic::UNIT,
        V::Int(i) => i.into(),
        V::BulkString(b) => String::from_utf8_lossy(&b).into_owned().into(),
        V::Array(items) | V::Set(items) => items.into_iter().map(to_dynamic).collect::<Array>().into(),
        V::SimpleString(s) => s.into(),
        V::Okay => "OK".into(),
        V::Map(pairs) => {
            let m: Map = pairs
                .into_iter()
                .map(|(k, v)| (to_dynamic(k).to_string().into(), to_dynamic(v)))
                .collect();
            m.into()
        }
        V::Attribute { data, .. } => to_dynamic(*data),
        V::Double(d) => d.into(),
        V::Boolean(b) => b.into(),
        V::VerbatimString { text, .. } => text.into(),
        V::Push { data, .. } => data.into_iter().map(to_dynamic).collect::<Array>().into(),
        V::ServerError(e) => format!("{e:?}").into(),
        other => format!("{other:?}").into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn client_list_lines_become_maps() {
        let clients =
            super::parse_client_list("id=3 addr=127.0.0.1:5000 name= age=12 cmd=client|list\nid=4 addr=x age=1\n");
        assert_eq!(clients.len(), 2);
        let first = clients[0].clone_cast::<rhai::Map>();
        assert_eq!(first["id"].as_int().unwrap(), 3);
        assert_eq!(first["cmd"].to_string(), "client|list");
    }
}
