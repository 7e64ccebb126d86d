//! The examples of docs/playbook-api.md, run: every ```rhai block of the page
//! becomes a playbook that the real runner runs against a real Redis, with
//! an alert firing, a webhook receiver behind `notify`, `escalate` and
//! `http`, an `[exec]` allowlist entry and one full backup to verify and
//! restore. A block passes when its run succeeds, or, when its first line is
//! `// doc-test: expect-failure "<text>"`, when it fails with that text;
//! it must pass in a dry run too, performing nothing the page's "Dry run"
//! section says a dry run does not perform.
//!
//! A second test reads the host API's registrations in src/playbooks/api/
//! and requires an example of every function there, so a function added
//! without one fails the build.

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use harness::{TestRedis, WebhookReceiver, engine_dir};
use redops::alerts::{Alert, AlertStatus, Severity, fingerprint};
use redops::config::Config;
use redops::diagnostics::Diagnostics;
use redops::invocation::Invocation;
use redops::invocation::RunOutcome;
use redops::notify::Notifier;
use redops::outbox::Outbox;
use redops::playbooks::runner::{RunRequest, Runner};
use redops::playbooks::runs::Trigger;
use redops::playbooks::{PlaybookEngine, RunRecord};
use redops::store::Store;
use tokio_util::sync::CancellationToken;

const DOC: &str = "docs/playbook-api.md";
const MARKER: &str = "// doc-test:";

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("Failed to read {}: {e}", path.display()))
}

/// One ```rhai block of the page.
struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    /// The nearest heading above it.
    heading: String,
    code: String,
    /// `Some(text)`: the run must fail with an error containing `text`.
    expect_failure: Option<String>,
}

impl Block {
    /// How a failure names the block: where it is and how it starts.
    fn name(&self) -> String {
        let first = self
            .code
            .lines()
            .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with(MARKER))
            .unwrap_or_default()
            .trim();
        format!("{DOC}:{} (under \"{}\") `{first}`", self.line, self.heading)
    }
}

/// Every ```rhai block, fences indented (inside a list item) or not.
fn blocks(doc: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut heading = String::from("(top)");
    // In a ```rhai block: where it starts, its indent, its lines.
    let mut open: Option<(usize, usize, Vec<&str>)> = None;
    // In a fence of another language, whose `#` lines are no headings.
    let mut other_fence = false;
    for (i, line) in doc.lines().enumerate() {
        let trimmed = line.trim();
        if let Some((start, indent, body)) = open.as_mut() {
            if trimmed == "```" {
                let code = body.join("\n") + "\n";
                out.push(block(*start, &heading, code));
                open = None;
            } else {
                let cut = line.len() - line.trim_start().len();
                body.push(&line[cut.min(*indent)..]);
            }
        } else if trimmed == "```rhai" && !other_fence {
            open = Some((i + 1, line.len() - line.trim_start().len(), Vec::new()));
        } else if trimmed.starts_with("```") {
            other_fence = !other_fence;
        } else if line.starts_with('#') && !other_fence {
            heading = line.trim_start_matches('#').trim().to_owned();
        }
    }
    assert!(open.is_none() && !other_fence, "{DOC}: a fence is never closed");
    out
}

fn block(line: usize, heading: &str, code: String) -> Block {
    let directive = code
        .lines()
        .next()
        .and_then(|l| l.trim().strip_prefix(MARKER))
        .map(str::trim);
    let expect_failure = directive.map(|d| {
        d.strip_prefix("expect-failure")
            .map(str::trim)
            .and_then(|q| q.strip_prefix('"')?.strip_suffix('"'))
            .unwrap_or_else(|| {
                panic!(
                    "{DOC}:{line}: unknown doc-test directive `{d}`; the one there is is `expect-failure \"<text>\"`"
                )
            })
            .to_owned()
    });
    Block {
        line,
        heading: heading.to_owned(),
        code,
        expect_failure,
    }
}

/// Data like the guide's Django platform keeps: sessions, cache entries
/// (one large), Celery results with and without a TTL, the Celery queue.
fn seed(conn: &mut redis::Connection) {
    let mut pipe = redis::pipe();
    pipe.cmd("FLUSHALL").ignore();
    for i in 0..50 {
        pipe.cmd("SET")
            .arg(format!("session:{i}"))
            .arg("u=42")
            .arg("EX")
            .arg(7200)
            .ignore();
    }
    pipe.cmd("SET").arg("session:legacy").arg("u=7").ignore();
    for i in 0..20 {
        pipe.cmd("SET")
            .arg(format!("cache:dropdown:{i}"))
            .arg("[]")
            .arg("EX")
            .arg(3600)
            .ignore();
    }
    pipe.cmd("SET").arg("cache:report").arg("r".repeat(200_000)).ignore();
    pipe.cmd("HSET")
        .arg("cache:dashboard:metrics")
        .arg("ops")
        .arg(1200)
        .arg("hit_ratio")
        .arg(0.93)
        .ignore();
    for i in 0..10 {
        let key = format!("celery-task-meta-{i}");
        pipe.cmd("SET").arg(&key).arg("{\"status\":\"SUCCESS\"}").ignore();
        if i % 2 == 0 {
            pipe.cmd("EXPIRE").arg(&key).arg(86_400).ignore();
        }
    }
    pipe.cmd("RPUSH").arg("celery").arg("task-1").arg("task-2").ignore();
    pipe.query::<()>(conn).expect("Failed to seed the test data");
}

fn config(redis: &TestRedis, hook: &WebhookReceiver) -> String {
    format!(
        r#"[[target]]
name = "cache"
url = "{redis}"
labels = {{ service = "django-cache", env = "prod" }}

[receiver.oncall]
type = "webhook"
url = "{oncall}"

[receiver.ops-chat]
type = "webhook"
url = "{chat}"

[escalation.critical]
steps = [{{ after = "0m", notify = ["oncall"] }}]

[exec.warm_cache]
command = "/bin/echo"
args = ["manage.py", "warm_cache"]
timeout = "10s"

[playbooks]
allow_commands = ["FLUSHDB"]
"#,
        redis = redis.url(0),
        oncall = hook.url_for("/oncall"),
        chat = hook.url_for("/ops-chat"),
    )
}

fn firing_alert() -> Alert {
    let (rule, target) = ("memory_critical", "cache");
    Alert {
        fingerprint: fingerprint(rule, target),
        rule: rule.into(),
        target: target.into(),
        severity: Severity::Critical,
        status: AlertStatus::Firing,
        labels: BTreeMap::from([
            ("rule".into(), rule.into()),
            ("target".into(), target.into()),
            ("family".into(), "memory".into()),
            ("severity".into(), "critical".into()),
        ]),
        summary: "Memory at 87.31% of maxmemory on cache".into(),
        value: Some("87.31".into()),
        starts_at: SystemTime::now(),
        ends_at: None,
        runbook: None,
        description: None,
        annotations: Default::default(),
    }
}

fn invocation(playbook: &str, hook: &WebhookReceiver) -> Invocation {
    Invocation {
        playbook: playbook.into(),
        rule: "memory_critical".into(),
        target: "cache".into(),
        params: BTreeMap::from([
            (
                "hook_url".into(),
                toml::Value::String(hook.url_for("/hooks/warm-cache")),
            ),
            ("status_url".into(), toml::Value::String(hook.url_for("/health"))),
        ]),
        alert: Some(firing_alert()),
    }
}

/// What went wrong with a block's run, or `None` when it did what the page says.
fn judge(block: &Block, record: &RunRecord) -> Option<String> {
    let verdict = match (&record.outcome, &block.expect_failure) {
        (RunOutcome::Succeeded { .. }, None) => return None,
        (RunOutcome::Failed { error }, Some(want)) if error.contains(want.as_str()) => return None,
        (RunOutcome::Failed { error }, Some(want)) => format!("failed, but not with {want:?}: {error}"),
        (RunOutcome::Succeeded { result }, Some(want)) => {
            format!("succeeded ({result:?}) where it should fail with {want:?}")
        }
        (outcome, _) => format!("{outcome:?}"),
    };
    Some(describe(block, record, &verdict))
}

fn describe(block: &Block, record: &RunRecord, verdict: &str) -> String {
    let audit: Vec<String> = record
        .audit
        .iter()
        .map(|e| format!("    [{}] {} -> {}", e.kind, e.detail, e.outcome))
        .collect();
    format!(
        "{}: {verdict}\n  findings: {:?}\n  audit:\n{}",
        block.name(),
        record.findings,
        audit.join("\n")
    )
}

/// What a dry run did that the page's "Dry run" section says it does not:
/// a side effect performed (only `http.get` and `backup.verify` may run),
/// or keys added or removed.
fn performed_in_dry_run(block: &Block, record: &RunRecord, keys_before: i64, keys_after: i64) -> Option<String> {
    let performed: Vec<&str> = record
        .audit
        .iter()
        .filter(|e| {
            let refused = e.outcome.starts_with("denied") || e.outcome.starts_with("failed");
            let read = e.detail.starts_with("GET ") || e.detail.starts_with("backup.verify ");
            !e.dry_run && !refused && !read
        })
        .map(|e| e.detail.as_str())
        .collect();
    if performed.is_empty() && keys_before == keys_after {
        return None;
    }
    let verdict = format!("performed {performed:?}; keys {keys_before} before, {keys_after} after");
    Some(describe(block, record, &verdict))
}

/// A request the webhook receiver must get: method, path, a test of its JSON body.
type Request = (&'static str, &'static str, fn(&serde_json::Value) -> bool);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_of_the_playbook_api_runs() {
    let blocks = blocks(&read(&repo_path(DOC)));
    assert!(
        blocks.len() >= 30,
        "only {} ```rhai blocks found in {DOC}",
        blocks.len()
    );

    // Every command lands in the slow log, so `redis.slowlog` reads real entries.
    let redis = TestRedis::start(&[("slowlog-log-slower-than", "0")]);
    let hook = WebhookReceiver::start();
    let names: Vec<String> = (0..blocks.len()).map(|i| format!("doc_{i:02}")).collect();
    let mut playbooks: Vec<(&str, &str)> = names
        .iter()
        .zip(&blocks)
        .map(|(n, b)| (n.as_str(), b.code.as_str()))
        .collect();
    playbooks.push(("fixture_full_backup", "backup.create(#{ type: \"full\" }).id\n"));
    let dir = engine_dir("1s", &config(&redis, &hook), &[], &playbooks);

    let config = Config::load(&dir.path().join("redops.toml")).unwrap_or_else(|e| panic!("{}", e.diagnostics.render()));
    let engine = Arc::new(PlaybookEngine::new(&config.playbooks));
    let mut diags = Diagnostics::default();
    let loaded = engine.load_dir(&config.engine.playbooks_dir, &mut diags);
    let compiled: Vec<bool> = names.iter().map(|n| loaded.get(n).is_some()).collect();

    let store = Store::open(&config.engine.state_dir).expect("Failed to open the state store");
    let stop = CancellationToken::new();
    let (notifier, workers) = Notifier::spawn(
        &config.receivers,
        Outbox::open(store).expect("Failed to open the outbox"),
        config.notify.fallback_receiver.clone(),
        stop.clone(),
    )
    .expect("Failed to start the notifier");
    let runner = Arc::new(Runner::new(&config, engine, loaded, notifier, false));

    let mut conn = redis.conn();
    seed(&mut conn);
    let fixture = {
        let inv = Invocation {
            alert: None,
            ..invocation("fixture_full_backup", &hook)
        };
        let runner = runner.clone();
        tokio::task::spawn_blocking(move || runner.run_triggered(inv, Trigger::Manual))
            .await
            .expect("the fixture run panicked")
    };
    assert!(
        matches!(fixture.outcome, RunOutcome::Succeeded { .. }),
        "the fixture backup failed: {:?}",
        fixture.outcome
    );

    let mut failures = Vec::new();
    for ((name, block), compiled) in names.iter().zip(&blocks).zip(compiled) {
        if !compiled {
            failures.push(format!("{}: does not compile:\n{}", block.name(), diags.render()));
            continue;
        }
        for dry_run in [true, false] {
            seed(&mut conn);
            let keys: i64 = redis::cmd("DBSIZE").query(&mut conn).expect("DBSIZE");
            let request = RunRequest {
                invocation: invocation(name, &hook),
                trigger: Some(Trigger::Alert),
                run_id: None,
                dry_run,
            };
            let runner = runner.clone();
            let record = tokio::task::spawn_blocking(move || runner.run_request(request))
                .await
                .expect("a playbook run panicked");
            let mut failure = judge(block, &record);
            if dry_run && failure.is_none() {
                let after: i64 = redis::cmd("DBSIZE").query(&mut conn).expect("DBSIZE");
                failure = performed_in_dry_run(block, &record, keys, after);
            }
            failures.extend(failure.map(|f| format!("{}{f}", if dry_run { "(dry run) " } else { "" })));
        }
    }
    assert!(
        failures.is_empty(),
        "{} run(s) of the {} examples in {DOC} did not do what the page says:\n\n{}",
        failures.len(),
        blocks.len(),
        failures.join("\n\n")
    );

    // What the examples asked for reached the outside world.
    let wanted: [Request; 5] = [
        ("GET", "/health", |_| true),
        ("POST", "/hooks/warm-cache", |b| b["scope"] == "critical"),
        ("POST", "/oncall", |b| b["kind"] == "message"),
        ("POST", "/oncall", |b| {
            b["kind"] == "alert" && b["playbook"]["outcome"]["error"] == "escalated to `critical`"
        }),
        ("POST", "/ops-chat", |b| b["kind"] == "message"),
    ];
    hook.wait_for(Duration::from_secs(10), |received| {
        wanted.iter().all(|(method, path, body)| {
            received
                .iter()
                .any(|r| r.method == *method && r.path == *path && body(&r.body))
        })
    });
    stop.cancel();
    drop(runner);
    workers.join().await;
}

/// The host functions registered in src/playbooks/api/, as a playbook calls
/// them: `redis.cmd`, `backup.restore`, `exec`, ...
fn host_functions() -> BTreeSet<String> {
    let dir = repo_path("src/playbooks/api");
    let objects = scope_objects(&read(&dir.join("mod.rs")));
    let mut functions = BTreeSet::new();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("Failed to list {}: {e}", dir.display()));
    for path in entries.map(|e| e.expect("a directory entry").path()) {
        if path.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        for (name, receiver) in registrations(&read(&path)) {
            let call = match receiver {
                None => name,
                Some(ty) => {
                    let object = objects.get(&ty).unwrap_or_else(|| {
                        panic!(
                            "{}: `{name}` is a method of {ty}, which no scope variable holds",
                            path.display()
                        )
                    });
                    format!("{object}.{name}")
                }
            };
            functions.insert(call);
        }
    }
    functions
}

/// `scope.push_constant("redis", redis::RedisApi)` → `RedisApi` → `redis`.
fn scope_objects(source: &str) -> BTreeMap<String, String> {
    source
        .match_indices("push_constant(")
        .filter_map(|(at, call)| {
            let rest = &source[at + call.len()..];
            let (name, rest) = rest.strip_prefix('"')?.split_once('"')?;
            let value = rest.trim_start().strip_prefix(',')?.split(')').next()?.trim();
            let ty = value.rsplit("::").next()?.trim();
            Some((ty.to_owned(), name.to_owned()))
        })
        .collect()
}

/// Each `register_fn("name", |first: Type, ...| ...)`: the name and, for a
/// method (`_: &mut RedisApi`), the type it is a method of.
fn registrations(source: &str) -> Vec<(String, Option<String>)> {
    source
        .match_indices("register_fn(")
        .map(|(at, call)| {
            let rest = source[at + call.len()..].trim_start();
            let (name, rest) = rest
                .strip_prefix('"')
                .and_then(|r| r.split_once('"'))
                .unwrap_or_else(|| panic!("a register_fn without a literal name: {}", &rest[..rest.len().min(80)]));
            let params = rest.split('|').nth(1).unwrap_or_default();
            let first = params.split(',').next().unwrap_or_default();
            let receiver = first.split_once("&mut ").map(|(_, ty)| ty.trim().to_owned());
            (name.to_owned(), receiver)
        })
        .collect()
}

/// Whether `code` calls `function` (`redis.cmd`, `exec`): the name followed
/// by `(`, not as the tail of a longer name.
fn calls(code: &str, function: &str) -> bool {
    let needle = format!("{function}(");
    code.match_indices(&needle).any(|(at, _)| {
        code[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'))
    })
}

#[test]
fn every_host_function_has_an_example() {
    let functions = host_functions();
    // The parse above must see the API, not an empty set that passes.
    for known in [
        "redis.cmd",
        "redis.bigkeys",
        "log.error",
        "time.now",
        "backup.restore",
        "http.post",
        "exec",
        "sleep",
    ] {
        assert!(functions.contains(known), "`{known}` not found among {functions:?}");
    }
    let blocks = blocks(&read(&repo_path(DOC)));
    let missing: Vec<&String> = functions
        .iter()
        .filter(|f| !blocks.iter().any(|b| calls(&b.code, f)))
        .collect();
    assert!(
        missing.is_empty(),
        "{DOC} has no ```rhai example calling {missing:?}; every host function needs one"
    );
}
