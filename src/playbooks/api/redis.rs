//! `redis.cmd([...])` and `redis.info(section)`: commands against the run's
//! target, under the command policy. In a dry run, reads are sent (a
//! playbook decides from them) and writes are recorded, not sent.

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};

use crate::playbooks::context::{self, RunState};
use crate::playbooks::policy;

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
    engine.register_fn("info", |_: &mut RedisApi| info(""));
    engine.register_fn("info", |_: &mut RedisApi, section: &str| info(section));
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
    context::with_run(|run| run_command(run, args))?
}

fn run_command(run: &mut RunState, args: &[String]) -> RhaiResult {
    let line = audit_line(args);
    if let Err(denied) = run.ctx.policy.check(args) {
        // Denied, not merely skipped by a dry run: the audit says so.
        run.record("redis", line, false, format!("denied: {denied}"));
        return Err(denied.to_string().into());
    }
    let read_only = policy::is_read_only(args);
    if run.ctx.dry_run && !read_only {
        run.record("redis", line, true, "not sent (dry run)".into());
        return Ok(Dynamic::from("DRY-RUN"));
    }
    if let Some(world) = run.ctx.scripted.clone() {
        return match world.redis(args) {
            Ok(v) => {
                if !read_only {
                    run.record("redis", line, false, "ok".into());
                }
                Ok(to_dynamic(v))
            }
            Err(error) => {
                run.record("redis", line, false, format!("failed: {error}"));
                Err(format!("redis {}: {error}", args[0].to_ascii_uppercase()).into())
            }
        };
    }
    let timeout = run.ctx.command_timeout.min(run.remaining());
    if run.conn.is_none() {
        let Some(info) = &run.ctx.connection else {
            return Err(format!("redis: target `{}` has no connection in this run", run.ctx.target).into());
        };
        match crate::redis::connect::connect_blocking(info, timeout) {
            Ok(c) => run.conn = Some(c),
            Err(e) => {
                let error = crate::secrets::redact(&e.to_string());
                run.record("redis", line, false, format!("failed: cannot connect: {error}"));
                return Err(format!("redis: cannot connect to target `{}`: {error}", run.ctx.target).into());
            }
        }
    }
    let conn = run.conn.as_mut().expect("connected above");
    let _ = conn.set_read_timeout(Some(timeout));
    let mut cmd = ::redis::cmd(&args[0]);
    for a in &args[1..] {
        cmd.arg(a);
    }
    match cmd.query::<::redis::Value>(conn) {
        Ok(v) => {
            if !read_only {
                run.record("redis", line, false, "ok".into());
            }
            Ok(to_dynamic(v))
        }
        Err(e) => {
            if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                run.conn = None;
            }
            let error = crate::secrets::redact(&e.to_string());
            run.record("redis", line, false, format!("failed: {error}"));
            Err(format!("redis {}: {error}", args[0].to_ascii_uppercase()).into())
        }
    }
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
