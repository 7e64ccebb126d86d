//! `backup.create(#{type: "full"})`, `backup.verify(id)`, `backup.list()`,
//! `backup.cleanup(#{retention_days: 7})`, `backup.restore(id, #{confirm:
//! true})`: backups of the run's target, in the engine's state directory
//! (docs/backups.md).
//!
//! In a dry run, `create`, `cleanup` and `restore` are recorded and not
//! performed (`cleanup` still reports what it would remove, `restore` still
//! verifies); `verify` and `list` only read, so they run, as `redis` reads do.
//!
//! Time spent inside `create`, `verify` and `restore` does not count against
//! `[playbooks] timeout`: a backup of a large server takes minutes, and it is
//! bounded by `[backup] io_timeout` on a silent server instead.

use std::time::{Duration, SystemTime};

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};

use crate::backup::{BackupRecord, BackupSettings, Kind, Silent, Target};
use crate::playbooks::context;

#[derive(Debug, Clone, Copy)]
pub struct BackupApi;

type RhaiResult = Result<Dynamic, Box<EvalAltResult>>;

pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<BackupApi>("Backup");
    engine.register_fn("create", |_: &mut BackupApi| create(Map::new()));
    engine.register_fn("create", |_: &mut BackupApi, options: Map| create(options));
    engine.register_fn("verify", |_: &mut BackupApi, id: &str| verify(id));
    engine.register_fn("list", |_: &mut BackupApi| list(Map::new()));
    engine.register_fn("list", |_: &mut BackupApi, options: Map| list(options));
    engine.register_fn("cleanup", |_: &mut BackupApi, options: Map| cleanup(options));
    engine.register_fn("restore", |_: &mut BackupApi, id: &str, options: Map| {
        restore(id, options)
    });
}

/// What a call needs from the run, taken out so that the run's state is not
/// borrowed for the length of a backup.
struct Call {
    settings: BackupSettings,
    target: String,
    connection: Option<redis::ConnectionInfo>,
    /// Set when the target is a whole cluster (not one of its nodes).
    cluster: Option<crate::config::ClusterConfig>,
    dry_run: bool,
}

fn call() -> Result<Call, Box<EvalAltResult>> {
    context::with_run(|run| {
        let settings = run
            .ctx
            .backups
            .clone()
            .ok_or_else(|| "backup: this run has no backup settings".to_owned())?;
        Ok::<_, String>(Call {
            settings,
            target: run.ctx.target.clone(),
            connection: run.ctx.connection.clone(),
            cluster: run.ctx.cluster.clone().filter(|c| c.name == run.ctx.target),
            dry_run: run.ctx.dry_run,
        })
    })?
    .map_err(Into::into)
}

/// Runs a long backup operation with the run's deadline moved by its length.
fn untimed<T>(f: impl FnOnce() -> T) -> T {
    let started = std::time::Instant::now();
    let out = f();
    let took = started.elapsed();
    let _ = context::with_run(|run| run.ctx.deadline += took);
    out
}

fn record(detail: String, dry_run: bool, outcome: String) {
    let _ = context::with_run(|run| run.record("backup", detail, dry_run, outcome));
}

fn fail(detail: String, error: impl std::fmt::Display) -> Box<EvalAltResult> {
    let error = crate::secrets::redact(&error.to_string());
    record(detail.clone(), false, format!("failed: {error}"));
    format!("{detail}: {error}").into()
}

fn string_option(options: &Map, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| options.get(*k))
        .filter(|v| !v.is_unit())
        .map(|v| v.to_string())
}

fn create(options: Map) -> RhaiResult {
    let call = call()?;
    if call.cluster.is_some() {
        return create_set(call, &options);
    }
    let kind_text = string_option(&options, &["type", "kind"]).unwrap_or_else(|| "full".into());
    let Some(kind) = Kind::parse(&kind_text) else {
        return Err(format!("backup.create: type must be \"full\" or \"rdb\", not {kind_text:?}").into());
    };
    let compress = match options.get("compress") {
        None => true,
        Some(v) => v
            .as_bool()
            .map_err(|_| "backup.create: compress must be true or false".to_owned())?,
    };
    let detail = format!("backup.create type={kind} target={}", call.target);
    if call.dry_run {
        record(detail, true, "not performed (dry run)".into());
        let mut m = Map::new();
        m.insert("id".into(), "DRY-RUN".into());
        m.insert("path".into(), "".into());
        m.insert("size".into(), 0_i64.into());
        m.insert("kind".into(), kind.as_str().into());
        m.insert("dry_run".into(), true.into());
        return Ok(m.into());
    }
    let Some(connection) = call.connection else {
        return Err(fail(
            detail,
            format!("target `{}` has no connection in this run", call.target),
        ));
    };
    let target = Target {
        name: call.target.clone(),
        connection,
    };
    let backups = call.settings.open().map_err(|e| fail(detail.clone(), e))?;
    context::fence("backup", &detail)?;
    match untimed(|| backups.create(&target, kind, compress, &mut Silent)) {
        Ok(r) => {
            record(detail, false, format!("ok: {} ({} bytes)", r.id, r.size));
            Ok(to_map(&r).into())
        }
        Err(e) => Err(fail(detail, e)),
    }
}

/// On a cluster target: a set of one RDB per master.
fn create_set(call: Call, options: &Map) -> RhaiResult {
    let cluster = call.cluster.clone().expect("only called for a cluster");
    let kind_text = string_option(options, &["type", "kind"]).unwrap_or_else(|| "rdb".into());
    if Kind::parse(&kind_text) != Some(Kind::Rdb) {
        return Err(format!(
            "backup.create: `{}` is a cluster: its backup is a set of one RDB per master, type \"rdb\", not {kind_text:?}",
            cluster.name
        )
        .into());
    }
    let compress = options.get("compress").map_or(Ok(true), |v| {
        v.as_bool()
            .map_err(|_| "backup.create: compress must be true or false".to_owned())
    })?;
    let detail = format!("backup.create type=rdb set of cluster={}", cluster.name);
    if call.dry_run {
        record(detail, true, "not performed (dry run)".into());
        let mut m = Map::new();
        m.insert("id".into(), "DRY-RUN".into());
        m.insert("kind".into(), "set".into());
        m.insert("dry_run".into(), true.into());
        return Ok(m.into());
    }
    let view = context::with_run(|run| {
        let timeout = run.ctx.command_timeout.min(run.remaining());
        let route = run.cluster.as_mut().expect("a cluster target has a route");
        route.refresh(timeout).cloned()
    })?
    .map_err(|e| fail(detail.clone(), e))?;
    let backups = call.settings.open().map_err(|e| fail(detail.clone(), e))?;
    context::fence("backup", &detail)?;
    match untimed(|| backups.create_cluster_set(&cluster, &view, compress, &mut Silent)) {
        Ok(set) => {
            record(detail, false, format!("ok: {} ({} members)", set.id, set.members.len()));
            let mut m = Map::new();
            m.insert("id".into(), set.id.clone().into());
            m.insert("kind".into(), "set".into());
            m.insert("cluster".into(), set.cluster.clone().into());
            m.insert(
                "layout".into(),
                crate::backup::cluster_set::show_layout(&set.layout).into(),
            );
            let members: Array = set
                .members
                .iter()
                .map(|mb| {
                    let mut x = Map::new();
                    x.insert("shard".into(), mb.shard.clone().into());
                    x.insert("master".into(), mb.master.clone().into());
                    x.insert("id".into(), mb.backup.clone().into());
                    Dynamic::from_map(x)
                })
                .collect();
            m.insert("members".into(), members.into());
            Ok(m.into())
        }
        Err(e) => Err(fail(detail, e)),
    }
}

fn verify(id: &str) -> RhaiResult {
    let call = call()?;
    let detail = format!("backup.verify {id}");
    let backups = call.settings.open().map_err(|e| fail(detail.clone(), e))?;
    let mut m = Map::new();
    m.insert("id".into(), id.into());
    let is_set = backups.get_set(id).map_err(|e| fail(detail.clone(), e))?.is_some();
    let outcome = untimed(|| {
        if is_set {
            backups
                .verify_set(id, &mut Silent)
                .map(|v| v.iter().map(|v| v.detail.clone()).collect::<Vec<_>>().join("; "))
        } else {
            backups.verify(id, &mut Silent).map(|v| v.detail)
        }
    });
    match outcome {
        Ok(verified) => {
            record(detail, false, "ok".into());
            m.insert("ok".into(), true.into());
            m.insert("detail".into(), verified.into());
            Ok(m.into())
        }
        Err(crate::backup::BackupError::Verify { why, .. }) => {
            let why = crate::secrets::redact(&why);
            record(detail, false, format!("failed verification: {why}"));
            m.insert("ok".into(), false.into());
            m.insert("error".into(), why.into());
            Ok(m.into())
        }
        Err(e) => Err(fail(detail, e)),
    }
}

/// This target's backups, newest first; `#{days_back: 7}` narrows them.
fn list(options: Map) -> RhaiResult {
    let call = call()?;
    let since = match options.get("days_back") {
        None => None,
        Some(d) => {
            let days = d
                .as_int()
                .map_err(|_| "backup.list: days_back must be an integer".to_owned())?;
            Some(SystemTime::now() - Duration::from_secs(days.clamp(0, 100_000) as u64 * 86_400))
        }
    };
    let backups = call
        .settings
        .open()
        .map_err(|e| format!("backup.list: {}", crate::secrets::redact(&e.to_string())))?;
    let records = backups
        .list(since, Some(&call.target))
        .map_err(|e| format!("backup.list: {e}"))?;
    Ok(records
        .iter()
        .map(|r| Dynamic::from(to_map(r)))
        .collect::<Array>()
        .into())
}

/// `#{retention_days: 7}` or `#{retention: "7d"}`; `type: "rdb"|"full"`
/// keeps the cleanup to one kind.
fn cleanup(options: Map) -> RhaiResult {
    let call = call()?;
    let kind = match string_option(&options, &["type", "kind"]) {
        None => None,
        Some(text) => Some(
            Kind::parse(&text)
                .ok_or_else(|| format!("backup.cleanup: type must be \"full\" or \"rdb\", not {text:?}"))?,
        ),
    };
    let retention = if let Some(days) = options.get("retention_days") {
        let days = days
            .as_int()
            .map_err(|_| "backup.cleanup: retention_days must be an integer".to_owned())?;
        Duration::from_secs(days.clamp(0, 100_000) as u64 * 86_400)
    } else if let Some(text) = string_option(&options, &["retention"]) {
        crate::config::duration::parse(&text).map_err(|e| format!("backup.cleanup: retention: {e}"))?
    } else {
        return Err("backup.cleanup: give #{retention_days: N} or #{retention: \"7d\"}".into());
    };
    let detail = format!(
        "backup.cleanup target={} type={} retention={}",
        call.target,
        kind.map_or("any", Kind::as_str),
        humantime::format_duration(retention)
    );
    let backups = call.settings.open().map_err(|e| fail(detail.clone(), e))?;
    if !call.dry_run {
        context::fence("backup", &detail)?;
    }
    let report = backups
        .cleanup(retention, Some(&call.target), kind, call.dry_run)
        .map_err(|e| fail(detail.clone(), e))?;
    let ids = |rs: &[BackupRecord]| rs.iter().map(|r| Dynamic::from(r.id.clone())).collect::<Array>();
    let outcome = if call.dry_run {
        format!("not performed (dry run): would remove {}", report.removed.len())
    } else if report.errors.is_empty() {
        format!("ok: removed {}", report.removed.len())
    } else {
        format!("removed {}; failed: {}", report.removed.len(), report.errors.join("; "))
    };
    record(detail, call.dry_run, outcome);
    let mut m = Map::new();
    m.insert("removed".into(), ids(&report.removed).into());
    m.insert("kept".into(), ids(&report.kept_newest).into());
    m.insert("freed_bytes".into(), (report.freed_bytes() as i64).into());
    m.insert(
        "errors".into(),
        report.errors.into_iter().map(Dynamic::from).collect::<Array>().into(),
    );
    m.insert("dry_run".into(), call.dry_run.into());
    Ok(m.into())
}

/// Restores a `full` backup into the run's target. Destructive, so the
/// call itself must say `confirm: true`; `pre_backup: false` skips the
/// backup of the target taken first, which leaves nothing to go back to, so
/// the config must allow it (`[playbooks] allow_restore_without_backup`).
fn restore(id: &str, options: Map) -> RhaiResult {
    let call = call()?;
    let flag = |name: &str, default: bool| match options.get(name) {
        None => Ok(default),
        Some(v) => v
            .as_bool()
            .map_err(|_| format!("backup.restore: {name} must be true or false")),
    };
    if !flag("confirm", false)? {
        return Err(format!(
            "backup.restore: refusing to restore {id} into `{}` without #{{confirm: true}}",
            call.target
        )
        .into());
    }
    let pre_backup = flag("pre_backup", true)?;
    let detail = format!("backup.restore {id} target={} pre_backup={pre_backup}", call.target);
    if !pre_backup && !context::with_run(|run| run.ctx.host.allow_restore_without_backup)? {
        let denied = "a restore without a pre-restore backup is denied by the playbook command policy: if the \
                      backup is the wrong one, nothing is left to go back to (to allow it, set [playbooks] \
                      allow_restore_without_backup = true; or restore with pre_backup: true)";
        // Denied, not merely skipped by a dry run: the audit says so.
        record(detail, false, format!("denied: {denied}"));
        return Err(format!("backup.restore: {denied}").into());
    }
    let backups = call.settings.open().map_err(|e| fail(detail.clone(), e))?;
    if call.dry_run {
        // Verifying only reads: the dry run says whether the real one would start.
        let outcome = match untimed(|| backups.verify(id, &mut Silent)) {
            Ok(_) => "not performed (dry run); the backup verifies".to_owned(),
            Err(e) => format!("not performed (dry run); it would be refused: {e}"),
        };
        record(detail, true, crate::secrets::redact(&outcome));
        let mut m = Map::new();
        m.insert("dry_run".into(), true.into());
        m.insert("restored".into(), 0_i64.into());
        return Ok(m.into());
    }
    let Some(connection) = call.connection else {
        return Err(fail(
            detail,
            format!("target `{}` has no connection in this run", call.target),
        ));
    };
    let target = Target {
        name: call.target.clone(),
        connection,
    };
    context::fence("backup", &detail)?;
    match untimed(|| backups.restore(id, &target, pre_backup, &mut Silent)) {
        Ok(report) => {
            let s = &report.stats;
            let pre = report.pre_backup.as_ref().map(|r| r.id.clone());
            record(
                detail,
                false,
                format!(
                    "restored {}, expired {}, failed {}{}",
                    s.restored,
                    s.expired,
                    s.failed,
                    pre.as_ref()
                        .map(|p| format!("; pre-restore backup {p}"))
                        .unwrap_or_default()
                ),
            );
            let mut m = Map::new();
            m.insert("dry_run".into(), false.into());
            m.insert("restored".into(), (s.restored as i64).into());
            m.insert("expired".into(), (s.expired as i64).into());
            m.insert("failed".into(), (s.failed as i64).into());
            m.insert(
                "errors".into(),
                s.errors.iter().cloned().map(Dynamic::from).collect::<Array>().into(),
            );
            m.insert("pre_backup".into(), pre.map(Dynamic::from).unwrap_or(Dynamic::UNIT));
            Ok(m.into())
        }
        Err(e) => Err(fail(detail, e)),
    }
}

fn to_map(r: &BackupRecord) -> Map {
    let mut m = Map::new();
    m.insert("id".into(), r.id.clone().into());
    m.insert("target".into(), r.target.clone().into());
    m.insert("kind".into(), r.kind.as_str().into());
    m.insert("path".into(), r.path.to_string_lossy().into_owned().into());
    m.insert("size".into(), (r.size as i64).into());
    m.insert("checksum".into(), r.checksum.clone().into());
    m.insert("encrypted".into(), r.encrypted.into());
    m.insert("created".into(), crate::backup::catalog::rfc3339(r.created_ms).into());
    m.insert(
        "verified".into(),
        r.verified_ms
            .map(|v| Dynamic::from(crate::backup::catalog::rfc3339(v)))
            .unwrap_or(Dynamic::UNIT),
    );
    m.insert(
        "verify_error".into(),
        r.verify_error.clone().map(Dynamic::from).unwrap_or(Dynamic::UNIT),
    );
    m
}
