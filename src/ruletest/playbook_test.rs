//! One `[[playbook_test]]`: runs a playbook on the real playbook engine
//! (policy, dry run, audit trail and all) against a scripted world — canned
//! Redis replies and a virtual clock — and compares what it did with what
//! the test expects.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::alerts::Alert;
use crate::glob::Glob;
use crate::playbooks::context::{AuditEntry, RunContext, ScriptedWorld};
use crate::playbooks::{Playbook, PlaybookEngine, RunRecord};
use crate::policy::CommandPolicy;

/// The script's clock starts here: 2024-01-01T00:00:00Z.
const CLOCK_START: f64 = 1_704_067_200.0;

pub struct PlaybookTest {
    pub name: String,
    pub line: usize,
    pub playbook: Arc<Playbook>,
    pub target: String,
    pub target_labels: BTreeMap<String, String>,
    pub params: BTreeMap<String, toml::Value>,
    pub alert: Option<Alert>,
    pub replies: Vec<CannedReply>,
    pub receivers: Vec<String>,
    pub dry_run: bool,
    pub allow_commands: Vec<String>,
    pub timeout: Duration,
    pub expect: PlaybookExpect,
}

/// The reply to every command that starts with `words` (compared without
/// regard to case); the longest match wins.
#[derive(Debug, Clone)]
pub struct CannedReply {
    pub words: Vec<String>,
    pub reply: Reply,
}

#[derive(Debug, Clone)]
pub enum Reply {
    Value(redis::Value),
    Error(String),
    /// One reply per call, the last repeating.
    Sequence(Vec<Reply>),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditMatch {
    /// The expected entries appear in this order, maybe with others between.
    #[default]
    Subsequence,
    /// The audit trail is exactly the expected entries.
    Exact,
}

#[derive(Default)]
pub struct PlaybookExpect {
    /// `succeeded`, `failed` or `timed_out`.
    pub outcome: Option<String>,
    pub error_contains: Option<String>,
    pub result_contains: Option<String>,
    /// Globs over the audit entries' details; `None` checks nothing.
    pub audit: Option<Vec<String>>,
    pub audit_match: AuditMatch,
    pub no_audit: Vec<String>,
    pub findings_contains: Vec<String>,
}

/// Canned replies and a clock that moves only when the playbook sleeps.
struct Script {
    replies: Vec<CannedReply>,
    calls: Mutex<HashMap<usize, usize>>,
    slept: Mutex<Duration>,
}

impl ScriptedWorld for Script {
    fn redis(&self, args: &[String]) -> Result<redis::Value, String> {
        let matches = |c: &CannedReply| {
            c.words.len() <= args.len() && c.words.iter().zip(args).all(|(w, a)| w.eq_ignore_ascii_case(a))
        };
        let Some((index, canned)) = self
            .replies
            .iter()
            .enumerate()
            .filter(|(_, c)| matches(c))
            .max_by_key(|(_, c)| c.words.len())
        else {
            return Err(format!(
                "no canned reply for `{}` in the test's `redis` table",
                args.join(" ")
            ));
        };
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let call = calls.entry(index).or_default();
        let reply = match &canned.reply {
            Reply::Sequence(replies) => replies.get(*call).or(replies.last()),
            single => Some(single),
        };
        *call += 1;
        match reply {
            Some(Reply::Value(v)) => Ok(v.clone()),
            Some(Reply::Error(e)) => Err(e.clone()),
            Some(Reply::Sequence(_)) | None => Err("an empty `replies` list".into()),
        }
    }

    fn now(&self) -> f64 {
        CLOCK_START + self.slept.lock().unwrap_or_else(|e| e.into_inner()).as_secs_f64()
    }

    fn advance(&self, by: Duration) -> Duration {
        let mut slept = self.slept.lock().unwrap_or_else(|e| e.into_inner());
        *slept += by;
        *slept
    }
}

/// A test whose `redis` table answers `CLUSTER NODES` runs against a
/// cluster named as its target (`c1`, or a node `c1/host:port`): `cluster.*`
/// reads the canned topology and commands are routed by slot, the audit
/// naming the node each went to.
fn scripted_cluster(test: &PlaybookTest) -> Option<crate::config::ClusterConfig> {
    let answers_nodes = test.replies.iter().any(|c| {
        c.words.len() == 2 && c.words[0].eq_ignore_ascii_case("CLUSTER") && c.words[1].eq_ignore_ascii_case("NODES")
    });
    answers_nodes.then(|| crate::config::ClusterConfig {
        name: test
            .target
            .split_once('/')
            .map_or(test.target.as_str(), |(c, _)| c)
            .to_owned(),
        seeds: Vec::new(),
        username: None,
        password: None,
        tls: false,
        tls_ca: None,
        keyspace_events: None,
        labels: BTreeMap::new(),
        probes: BTreeMap::new(),
    })
}

/// Runs the test; the failures, as lines of text (empty when it passes).
pub fn run(test: &PlaybookTest, engine: &PlaybookEngine) -> Vec<String> {
    let notifier = match offline_notifier() {
        Ok(n) => n,
        Err(e) => return vec![format!("cannot set up the run: {e}")],
    };
    let state = match ThrowawayDir::new() {
        Ok(d) => d,
        Err(e) => return vec![format!("cannot set up the run: a temporary state directory: {e}")],
    };
    let script = Script {
        replies: test.replies.clone(),
        calls: Mutex::default(),
        slept: Mutex::default(),
    };
    let ctx = RunContext {
        run_id: "test".into(),
        playbook: test.playbook.name.clone(),
        target: test.target.clone(),
        target_labels: test.target_labels.clone(),
        connection: None,
        cluster: scripted_cluster(test),
        rule: test.alert.as_ref().map(|a| a.rule.clone()),
        alert: test.alert.clone(),
        params: test.params.clone(),
        dry_run: test.dry_run,
        deadline: std::time::Instant::now() + test.timeout,
        command_timeout: Duration::from_secs(1),
        policy: Arc::new(CommandPolicy::playbook(&test.allow_commands)),
        receivers: Arc::new(test.receivers.iter().cloned().collect::<HashSet<_>>()),
        notifier,
        scripted: Some(Arc::new(script)),
        // backup.* works on an empty catalog of its own: `list()` is empty,
        // and in a dry run nothing is written but the catalog itself.
        backups: Some(crate::backup::BackupSettings {
            state_dir: state.0.clone(),
            config: crate::config::backup::BackupConfig::default(),
        }),
        host: Default::default(),
        ha: None,
    };
    let record = engine.run(&test.playbook, ctx);
    compare(&test.expect, &record)
}

/// A state directory for one run, removed after it.
struct ThrowawayDir(std::path::PathBuf);

impl ThrowawayDir {
    fn new() -> std::io::Result<ThrowawayDir> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("redops-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(ThrowawayDir(dir))
    }
}

impl Drop for ThrowawayDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A notifier with no receivers: a scripted run that is not a dry run
/// records its `notify` calls as queued, and they go nowhere.
fn offline_notifier() -> Result<crate::notify::Notifier, String> {
    let outbox = crate::outbox::Outbox::open(crate::store::Store::in_memory()).map_err(|e| e.to_string())?;
    let (notifier, _workers) = crate::notify::Notifier::spawn(
        &BTreeMap::new(),
        outbox,
        None,
        tokio_util::sync::CancellationToken::new(),
    )?;
    Ok(notifier)
}

fn compare(expect: &PlaybookExpect, record: &RunRecord) -> Vec<String> {
    use crate::invocation::RunOutcome;
    let mut lines = Vec::new();
    let (error, result) = match &record.outcome {
        RunOutcome::Failed { error } => (Some(error.as_str()), None),
        RunOutcome::Succeeded { result } => (None, Some(result.as_str())),
        RunOutcome::TimedOut { .. } => (None, None),
    };
    let got_outcome = match &record.outcome {
        RunOutcome::Failed { error } => format!("failed: {error}"),
        RunOutcome::Succeeded { result } if result.is_empty() => "succeeded".into(),
        RunOutcome::Succeeded { result } => format!("succeeded: {result:?}"),
        RunOutcome::TimedOut { .. } => "timed_out (the run passed its deadline)".into(),
    };
    if let Some(want) = &expect.outcome
        && want != record.outcome.label()
    {
        lines.push(format!("outcome   expected: {want}"));
        lines.push(format!("               got: {got_outcome}"));
    }
    if let Some(want) = &expect.error_contains
        && !error.is_some_and(|e| e.contains(want.as_str()))
    {
        lines.push(format!("error     expected: containing {want:?}"));
        lines.push(format!("               got: {got_outcome}"));
    }
    if let Some(want) = &expect.result_contains
        && !result.is_some_and(|r| r.contains(want.as_str()))
    {
        lines.push(format!("result    expected: containing {want:?}"));
        lines.push(format!("               got: {got_outcome}"));
    }

    let audit_problem = audit_problem(expect, &record.audit);
    let forbidden: Vec<(&String, &AuditEntry)> = expect
        .no_audit
        .iter()
        .filter_map(|p| {
            let pattern = AuditPattern::new(p);
            record.audit.iter().find(|e| pattern.matches(e)).map(|e| (p, e))
        })
        .collect();
    if let Some(problem) = &audit_problem {
        lines.push(format!("audit     {problem}"));
    }
    for (pattern, entry) in &forbidden {
        lines.push(format!(
            "audit     expected no entry matching {pattern:?}, got {:?}",
            entry.detail
        ));
    }
    if audit_problem.is_some() || !forbidden.is_empty() {
        lines.push("          the audit trail was:".into());
        if record.audit.is_empty() {
            lines.push("            (empty)".into());
        }
        for e in &record.audit {
            lines.push(format!("            {:<7} {} -> {}", e.kind, e.detail, e.outcome));
        }
    }

    let missing: Vec<&String> = expect
        .findings_contains
        .iter()
        .filter(|want| !record.findings.iter().any(|f| f.contains(want.as_str())))
        .collect();
    for want in &missing {
        lines.push(format!("findings  expected one containing {want:?}"));
    }
    if !missing.is_empty() {
        lines.push("          the findings were:".into());
        if record.findings.is_empty() {
            lines.push("            (none)".into());
        }
        for f in &record.findings {
            lines.push(format!("            {f}"));
        }
    }
    if !lines.is_empty() && expect.outcome.is_none() {
        lines.push(format!("outcome   {got_outcome}"));
    }
    lines
}

/// A glob over an audit entry: over its detail (`MEMORY PURGE`), or over
/// `detail -> outcome` when it holds ` -> ` (`MEMORY PURGE -> ok`).
struct AuditPattern {
    glob: Glob,
    with_outcome: bool,
}

impl AuditPattern {
    fn new(text: &str) -> AuditPattern {
        AuditPattern {
            glob: Glob::new(text),
            with_outcome: text.contains(" -> "),
        }
    }

    fn matches(&self, entry: &AuditEntry) -> bool {
        if self.with_outcome {
            self.glob
                .matches(format!("{} -> {}", entry.detail, entry.outcome).as_bytes())
        } else {
            self.glob.matches(entry.detail.as_bytes())
        }
    }
}

/// What is wrong with the audit trail against `expect_audit`, if anything.
fn audit_problem(expect: &PlaybookExpect, audit: &[AuditEntry]) -> Option<String> {
    let patterns = expect.audit.as_ref()?;
    let globs: Vec<(&String, AuditPattern)> = patterns.iter().map(|p| (p, AuditPattern::new(p))).collect();
    match expect.audit_match {
        AuditMatch::Exact => {
            let same = globs.len() == audit.len() && globs.iter().zip(audit).all(|((_, g), e)| g.matches(e));
            (!same).then(|| format!("expected exactly: {patterns:?}"))
        }
        AuditMatch::Subsequence => {
            let mut rest = audit.iter();
            let mut previous: Option<&String> = None;
            for (pattern, glob) in &globs {
                if !rest.any(|e| glob.matches(e)) {
                    return Some(match previous {
                        Some(p) => format!("expected an entry matching {pattern:?} after one matching {p:?}"),
                        None => format!("expected an entry matching {pattern:?}"),
                    });
                }
                previous = Some(pattern);
            }
            None
        }
    }
}
