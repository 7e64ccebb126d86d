//! Micro benchmarks of the hot paths (issue 8, figure 6), with a small
//! timing harness (std `Instant` and `black_box`, no criterion).
//!
//! Run: `cargo bench --bench micro` (optionally a filter: `cargo bench
//! --bench micro -- keyspace`). Each case is calibrated to ~100 ms a batch,
//! then timed over 7 batches; the median batch is reported in ns per
//! operation, with the fastest and slowest batch.

use std::collections::{BTreeMap, HashSet};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redops::event::keyspace::KeyspaceSelector;
use redops::event::{MetricValue, Metrics};
use redops::glob::Glob;
use redops::redis::info;
use redops::redis::metrics::{Limits, MetricsDeriver};
use redops::rules::expr::ExprEngine;
use redops::rules::history::History;
use redops::sources::keyspace::KeyspaceCounter;
use rhai::{Dynamic, Scope};

const BATCHES: usize = 7;
const BATCH_TIME: Duration = Duration::from_millis(100);

/// Times `f` (one operation a call): median, min and max ns/op over batches.
fn bench(name: &str, filter: &Option<String>, mut f: impl FnMut()) {
    if filter.as_ref().is_some_and(|flt| !name.contains(flt.as_str())) {
        return;
    }
    // Calibrate: double the batch until it takes BATCH_TIME (bounded).
    let mut iters: u64 = 1;
    for _ in 0..40 {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        if t.elapsed() >= BATCH_TIME / 4 {
            break;
        }
        iters *= 2;
    }
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    let per = t.elapsed().as_secs_f64() / iters as f64;
    let iters = ((BATCH_TIME.as_secs_f64() / per.max(1e-9)) as u64).max(1);
    let mut ns: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_secs_f64() * 1e9 / iters as f64
        })
        .collect();
    ns.sort_by(f64::total_cmp);
    println!(
        "{name:<58} {:>12.1} ns/op   (min {:.1}, max {:.1}; {BATCHES} batches x {iters})",
        ns[BATCHES / 2],
        ns[0],
        ns[BATCHES - 1]
    );
}

fn scope_of(target: &str, metrics: &Metrics) -> Scope<'static> {
    // As the evaluator builds it for each sample.
    let mut scope = Scope::new();
    scope.push_constant("target", target.to_owned());
    for (name, value) in metrics {
        let v: Dynamic = match value {
            MetricValue::Num(n) => (*n).into(),
            MetricValue::Text(t) => t.clone().into(),
        };
        scope.push_constant_dynamic(name.clone(), v);
    }
    scope
}

fn selectors() -> Vec<(String, KeyspaceSelector)> {
    storm_globs()
        .into_iter()
        .enumerate()
        .map(|(i, g)| {
            (
                format!("rule_{i}"),
                KeyspaceSelector {
                    events: vec!["set".into()],
                    keys: Glob::new(&g),
                    window: Duration::from_secs(60),
                    db: None,
                },
            )
        })
        .collect()
}

/// The storm's 100 globs: 7 that take every key, 93 of every shape.
fn storm_globs() -> Vec<String> {
    let mut globs = Vec::new();
    for d in 0..10 {
        globs.push(format!("key:000000{d}*"));
        globs.push(format!("key:*{d}"));
        globs.push(format!("key:000000[0-{d}]*"));
        globs.push(format!("key:0000001?{d}*"));
        globs.push(format!("*:00000{d}*"));
        globs.push(format!("key:000000{d:06}"));
        globs.push(format!("key:*{d}{d}"));
        globs.push(format!("user:{d}*"));
        globs.push(format!("key:0000005{d}*"));
        globs.push(format!("key:[^{d}]*"));
    }
    globs.truncate(93);
    let mut all: Vec<String> = vec!["*".to_string(); 7];
    all.extend(globs);
    all
}

/// The engine's share of a keyspace storm: every 10 ms the 100 rules'
/// counts come in, each moved, and each rule is evaluated.
fn keyspace_tick(filter: &Option<String>) {
    use redops::diagnostics::{Diagnostics, SourceFile};
    use redops::event::{Event, KeyspaceCounts};
    use redops::rules::eval::Evaluator;
    use redops::rules::load::{References, parse_rule_file};

    let text: String = storm_globs()
        .iter()
        .enumerate()
        .map(|(i, glob)| {
            format!(
                "[[rule]]\nname = \"rule_{i}\"\nsource = \"keyspace\"\nevents = [\"set\"]\nkeys = \"{glob}\"\n\
                 window = \"1m\"\nwhen = \"count > 1000000000\"\nseverity = \"info\"\n\n"
            )
        })
        .collect();
    let refs = References {
        playbooks: vec![],
        targets: vec!["t"],
        receivers: vec![],
    };
    let expr = Arc::new(ExprEngine::new());
    let mut diags = Diagnostics::default();
    let rules = parse_rule_file(
        &SourceFile::new("rules/storm.toml", text.as_str()),
        &refs,
        &expr,
        &mut diags,
    );
    assert!(!diags.has_errors(), "{}", diags.render());
    let rules: Vec<_> = rules.into_iter().map(Arc::new).collect();
    let names: Vec<Arc<str>> = rules.iter().map(|r| r.name.as_str().into()).collect();
    let labels = [("t".to_owned(), BTreeMap::new())];
    let mut evaluator = Evaluator::new(rules, expr, labels, Duration::from_secs(600));
    let mut now = tokio::time::Instant::now();
    let mut total = 0u64;
    bench(
        "Evaluator::on_event, a storm tick (100 keyspace rules moved)",
        filter,
        || {
            now += Duration::from_millis(10);
            total += 1_000;
            let counts = KeyspaceCounts {
                target: "t".into(),
                counts: names.iter().map(|n| (n.clone(), total)).collect(),
            };
            black_box(evaluator.on_event(&Event::KeyspaceCounts(counts), now, SystemTime::now()));
        },
    );
}

fn main() {
    // `cargo bench` passes `--bench`; anything else is a name filter.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    println!("redops micro benchmarks (release; median of {BATCHES} batches of ~{BATCH_TIME:?})");

    // INFO parsing of a full `INFO ALL` reply.
    let info_text = include_str!("../tests/fixtures/info_all_master.txt");
    println!(
        "INFO ALL fixture: {} bytes, {} fields",
        info_text.len(),
        info::parse(info_text).fields().count()
    );
    bench("info::parse (INFO ALL, master)", &filter, || {
        black_box(info::parse(black_box(info_text)));
    });
    let parsed = info::parse(info_text);
    let limits = Limits {
        maxmemory: 64 << 20,
        maxclients: 10_000,
    };
    let mut deriver = MetricsDeriver::new();
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    bench("info::parse + MetricsDeriver::derive (one sample)", &filter, || {
        let i = info::parse(black_box(info_text));
        black_box(deriver.derive(&i, &limits, Some(Duration::from_secs(1)), unix));
    });

    // `when` evaluation: compiled once, evaluated against a sample's scope.
    let mut deriver = MetricsDeriver::new();
    deriver.derive(&parsed, &limits, None, unix);
    let mut metrics = deriver.derive(&parsed, &limits, Some(Duration::from_secs(1)), unix);
    let derived = metrics.len();
    // Probes add metrics of their own (`probes = { celery_queue = "LLEN celery" }`).
    for i in 0..(40usize.saturating_sub(derived)) {
        metrics.insert(format!("probe_{i}"), MetricValue::Num(i as f64));
    }
    let first = metrics.keys().next().cloned().unwrap_or_default();
    println!(
        "scope: {} metrics ({derived} derived from the fixture, the rest probes), first pushed `{first}`",
        metrics.len()
    );
    let expr = ExprEngine::new();
    let mut history = History::new(Duration::from_secs(600));
    let now = tokio::time::Instant::now();
    for (text, label) in [
        ("memory_used_pct > 85", "simple comparison"),
        (
            "mem_fragmentation_ratio > 1.5 && used_memory > 67108864",
            "two comparisons",
        ),
    ] {
        let ast = expr.compile(text).unwrap();
        let mut scope = scope_of("cache", &metrics);
        assert!(expr.eval_bool(&ast, &mut scope, &mut history, now).is_ok(), "{text}");
        bench(&format!("eval_bool `{text}` ({label})"), &filter, || {
            black_box(expr.eval_bool(&ast, &mut scope, &mut history, now).ok());
        });
    }
    // Rhai looks variables up from the most recently pushed: the first
    // metric pushed is the slowest to find.
    let worst = format!("{first} > 0");
    let ast = expr.compile(&worst).unwrap();
    let mut scope = scope_of("cache", &metrics);
    assert!(expr.eval_bool(&ast, &mut scope, &mut history, now).is_ok(), "{worst}");
    bench(&format!("eval_bool `{worst}` (first-pushed metric)"), &filter, || {
        black_box(expr.eval_bool(&ast, &mut scope, &mut history, now).ok());
    });
    let ast = expr.compile("memory_used_pct > 85").unwrap();
    bench("scope build (40 metrics) + eval_bool", &filter, || {
        let mut scope = scope_of("cache", black_box(&metrics));
        black_box(expr.eval_bool(&ast, &mut scope, &mut history, now).ok());
    });
    bench("compile `memory_used_pct > 85` (load time only)", &filter, || {
        black_box(expr.compile(black_box("memory_used_pct > 85")).ok());
    });

    // The event loop's share of sample history: copy the kept metrics into
    // the writer's queue (or count a drop when it is full) and add the
    // target's trend metrics to the sample.
    let history = redops::history::HistoryStore::open(redops::store::Store::in_memory()).unwrap();
    let (recorder, _writer) = redops::history::spawn(history, Default::default()).unwrap();
    let mut event = redops::event::Event::Sample(redops::event::Sample {
        target: "cache".into(),
        at: SystemTime::now(),
        metrics: metrics.clone(),
    });
    bench("history Recorder::observe (one sample, 40 metrics)", &filter, || {
        recorder.observe(black_box(&mut event));
    });

    // Keyspace reader: parse the channel, match 100 selectors, count.
    let mut counter = KeyspaceCounter::new(selectors());
    let keys: Vec<Vec<u8>> = (0..4096u64)
        .map(|i| format!("key:{:012}", (i * 2_654_435_761) % 1_000_000).into_bytes())
        .collect();
    let mut i = 0usize;
    // Counts are added to the rules' totals once a tick, as the reader
    // does: here once in 1,024 events, the cost shared among them.
    bench("KeyspaceCounter::observe, 100 selectors on `set`", &filter, || {
        counter.observe(black_box(b"__keyevent@0__:set"), black_box(&keys[i & 4095]));
        i += 1;
        if i.is_multiple_of(1024) {
            black_box(counter.changed());
        }
    });
    // The same 100 selectors tried one by one, as the reader did before
    // they were compiled into one set: the ratio of these two lines is the
    // gain, measured in the same run.
    let reference: Vec<KeyspaceSelector> = selectors().into_iter().map(|(_, s)| s).collect();
    let mut counts = vec![0u64; reference.len()];
    bench(
        "100 selectors one by one (`KeyspaceSelector::matches`, before)",
        &filter,
        || {
            let key = black_box(&keys[i & 4095]);
            for (c, s) in counts.iter_mut().zip(&reference) {
                *c += u64::from(s.matches(0, "set", key));
            }
            i += 1;
        },
    );
    black_box(&counts);
    // The 93 distinct globs as one regex set searched for overlapping
    // matches with a reused `PatternSet`: how `observe` matched keys before
    // the lazy DFA was walked by hand (0.39 µs an event with the rest of
    // `observe`). Against the DFA below, in the same run.
    let globs: Vec<String> = reference
        .iter()
        .filter(|s| s.keys != Glob::Any)
        .map(|s| redops::event::keyspace::glob_regex(&s.keys))
        .collect();
    let set = regex_automata::meta::Builder::new()
        .configure(
            regex_automata::meta::Config::new()
                .match_kind(regex_automata::MatchKind::All)
                .utf8_empty(false)
                .which_captures(regex_automata::nfa::thompson::WhichCaptures::None),
        )
        .syntax(regex_automata::util::syntax::Config::new().utf8(false))
        .build_many(&globs)
        .unwrap();
    let mut matched = regex_automata::PatternSet::new(set.pattern_len());
    bench(
        "93 globs as one regex set (overlapping search, before)",
        &filter,
        || {
            matched.clear();
            set.which_overlapping_matches(&regex_automata::Input::new(black_box(&keys[i & 4095])), &mut matched);
            black_box(matched.len());
            i += 1;
        },
    );
    let mut one = KeyspaceCounter::new(selectors().into_iter().take(1).collect());
    bench("KeyspaceCounter::observe, 1 selector (`*`)", &filter, || {
        one.observe(black_box(b"__keyevent@0__:set"), black_box(&keys[i & 4095]));
        i += 1;
    });
    bench("KeyspaceCounter::observe, event no rule listens to", &filter, || {
        counter.observe(black_box(b"__keyevent@0__:expired"), black_box(&keys[i & 4095]));
        i += 1;
    });
    // Where the 100-selector cost goes: one glob of each shape.
    for g in [
        "*",
        "key:0000005*",
        "key:000000123456",
        "key:*5",
        "*:000005*",
        "key:000000[0-5]*",
        "key:[^5]*",
    ] {
        let glob = Glob::new(g);
        let kind = format!("{glob:?}");
        let kind = kind.split('(').next().unwrap_or("").to_string();
        bench(&format!("Glob::matches `{g}` ({kind})"), &filter, || {
            black_box(glob.matches(black_box(&keys[i & 4095])));
            i += 1;
        });
    }
    bench(
        "KeyspaceCounter::snapshot (100 rules, all of them: once a second)",
        &filter,
        || {
            black_box(counter.snapshot("t", true));
        },
    );
    keyspace_tick(&filter);

    // Playbook start: the AST is cached; one run of an empty playbook.
    playbook_run(&filter);
}

fn playbook_run(filter: &Option<String>) {
    use redops::config::PlaybookConfig;
    use redops::diagnostics::{Diagnostics, SourceFile};
    use redops::notify::Notifier;
    use redops::outbox::Outbox;
    use redops::playbooks::context::RunContext;
    use redops::playbooks::engine::PlaybookEngine;
    use redops::policy::CommandPolicy;
    use redops::store::Store;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (notifier, _handle) = Notifier::spawn(
        &BTreeMap::new(),
        Outbox::open(Store::in_memory()).unwrap(),
        None,
        shutdown,
    )
    .unwrap();
    let engine = PlaybookEngine::new(&PlaybookConfig::default());
    let mut diags = Diagnostics::default();
    let empty = engine
        .compile(&SourceFile::new("empty.rhai", "()\n".to_string()), &mut diags)
        .unwrap();
    let first = engine
        .compile(
            &SourceFile::new("first.rhai", "let t = time.now();\n".to_string()),
            &mut diags,
        )
        .unwrap();
    let alert = redops::alerts::Alert {
        fingerprint: redops::alerts::fingerprint("bench", "t"),
        rule: "bench".into(),
        target: "t".into(),
        severity: redops::alerts::Severity::High,
        status: redops::alerts::AlertStatus::Firing,
        labels: [("rule", "bench"), ("target", "t"), ("severity", "high")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        summary: "bench".into(),
        value: None,
        starts_at: SystemTime::now(),
        ends_at: None,
        runbook: None,
        description: None,
        annotations: Default::default(),
    };
    let policy = Arc::new(CommandPolicy::playbook(&[]));
    let receivers: Arc<HashSet<String>> = Arc::default();
    let ctx = || RunContext {
        run_id: "bench".into(),
        playbook: "empty".into(),
        target: "t".into(),
        target_labels: BTreeMap::new(),
        connection: None,
        cluster: None,
        rule: Some("bench".into()),
        alert: Some(alert.clone()),
        params: BTreeMap::new(),
        dry_run: false,
        deadline: Instant::now() + Duration::from_secs(30),
        command_timeout: Duration::from_secs(1),
        policy: policy.clone(),
        receivers: receivers.clone(),
        notifier: notifier.clone(),
        scripted: None,
        backups: None,
        host: Default::default(),
        ha: None,
    };
    bench("PlaybookEngine::run, empty playbook (cached AST)", filter, || {
        black_box(engine.run(&empty, ctx()));
    });
    bench("PlaybookEngine::run, `let t = time.now();`", filter, || {
        black_box(engine.run(&first, ctx()));
    });
}
