//! Each warning on a small config dir, through the loader as `check` runs it.

use std::path::Path;

use super::*;

const CONFIG: &str = r#"[engine]
rules_dir = "rules"
playbooks_dir = "playbooks"
sample_interval = "5s"

[[target]]
name = "cache"
url = "redis://127.0.0.1:1/0"
probes = { celery_backlog = "LLEN celery" }

[receiver.oncall]
type = "webhook"
url = "http://127.0.0.1:9/hook"
"#;

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The rendered warnings for `rules` (one rule file) and `playbooks`.
fn warnings_with(config: &str, rules: &str, playbooks: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "redops.toml", config);
    write(dir.path(), "rules/r.toml", rules);
    std::fs::create_dir_all(dir.path().join("playbooks")).unwrap();
    for (name, text) in playbooks {
        write(dir.path(), &format!("playbooks/{name}.rhai"), text);
    }
    let loaded = match crate::loader::load(&dir.path().join("redops.toml")) {
        Ok(l) => l,
        Err(d) => panic!("{}", d.render()),
    };
    loaded
        .warnings
        .iter()
        .map(|d| format!("{}: {}", d.location_in(dir.path()), d.message))
        .collect()
}

fn warnings(rules: &str) -> Vec<String> {
    warnings_with(CONFIG, rules, &[])
}

trait RelativeLocation {
    fn location_in(&self, dir: &Path) -> String;
}

impl RelativeLocation for Diagnostic {
    fn location_in(&self, dir: &Path) -> String {
        let file = self.file.strip_prefix(dir).unwrap_or(&self.file);
        format!("{}:{}:{}", file.display(), self.line, self.col)
    }
}

fn rule(source: &str, body: &str) -> String {
    format!("[[rule]]\nname = \"r\"\nsource = \"{source}\"\n{body}\n")
}

#[test]
fn a_clean_rule_has_no_warning() {
    let w = warnings(&rule(
        "sample",
        "when = \"memory_used_pct > 85 && role == \\\"master\\\"\"\nclear = \"memory_used_pct < 80\"\nfor = \"2m\"",
    ));
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn an_unknown_metric_is_located_with_the_closest_name() {
    let w = warnings(&rule(
        "sample",
        "when = \"target == \\\"cache\\\" && memory_used_percent > 85\"",
    ));
    // `when = "` is 8 characters, then `target == \"cache\" && ` is 23 more.
    assert_eq!(
        w,
        ["rules/r.toml:4:32: rule `r`: no sample event has `memory_used_percent`, so this condition never has data"]
    );
}

#[test]
fn each_source_has_its_own_variables() {
    assert!(
        warnings(&rule(
            "sample",
            "when = \"celery_backlog > 10 && quorum_ok == 0 && db4_keys > 1\""
        ))
        .is_empty()
    );
    assert!(
        warnings(&rule(
            "keyspace",
            "events = [\"evicted\"]\nwindow = \"1m\"\nwhen = \"count > window_secs\""
        ))
        .is_empty()
    );
    assert!(
        warnings(&rule(
            "health",
            "when = \"redis_up == 0 && reason.contains(\\\"x\\\")\""
        ))
        .is_empty()
    );
    assert!(
        warnings(&rule(
            "sentinel",
            "events = [\"+sdown\"]\nwhen = \"kind == \\\"master\\\" && group != sentinel\""
        ))
        .is_empty()
    );
    let w = warnings(&rule("health", "when = \"memory_used_pct > 1\""));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("no health event has `memory_used_pct`"), "{w:?}");
}

#[test]
fn sentinel_variables_cover_every_field_of_the_fixture_events() {
    let text = std::fs::read_to_string("tests/fixtures/sentinel/events.txt").unwrap();
    for line in text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        for key in crate::event::sentinel::parse_line(line).fields().keys() {
            assert!(SENTINEL_VARIABLES.contains(&key.as_str()), "`{key}` from `{line}`");
        }
    }
}

#[test]
fn look_back_arguments_are_checked() {
    let w = warnings(&rule("sample", "when = 'delta(\"usedmemory\", \"5 mins please\") > 0'"));
    assert_eq!(
        w,
        [
            "rules/r.toml:4:15: rule `r`: `delta` looks back over `usedmemory`, which no sample has",
            "rules/r.toml:4:29: rule `r`: `5 mins please` is not a duration",
        ]
    );
}

#[test]
fn for_shorter_than_the_sample_interval_warns_on_sample_rules_only() {
    let w = warnings(&rule("sample", "when = \"memory_used_pct > 85\"\nfor = \"3s\""));
    assert_eq!(
        w,
        ["rules/r.toml:5:7: rule `r`: `for = \"3s\"` is shorter than [engine] sample_interval (5s)"]
    );
    assert!(warnings(&rule("sample", "when = \"memory_used_pct > 85\"\nfor = \"5s\"")).is_empty());
    assert!(warnings(&rule("sample", "when = \"memory_used_pct > 85\"\nfor = \"0s\"")).is_empty());
    assert!(warnings(&rule("health", "when = \"redis_up == 0\"\nfor = \"1s\"")).is_empty());
}

#[test]
fn keep_firing_for_shorter_than_the_sample_interval_warns() {
    let w = warnings(&rule(
        "sample",
        "when = \"master_link_up == 0\"\nkeep_firing_for = \"2s\"",
    ));
    assert_eq!(
        w,
        ["rules/r.toml:5:19: rule `r`: `keep_firing_for = \"2s\"` is shorter than [engine] sample_interval (5s)"]
    );
    assert!(
        warnings(&rule(
            "sample",
            "when = \"master_link_up == 0\"\nkeep_firing_for = \"1m\""
        ))
        .is_empty()
    );
}

#[test]
fn percentages_outside_0_to_100_warn() {
    let w = warnings(&rule("sample", "when = \"hit_ratio < 0.8 || memory_used_pct > 850\""));
    assert_eq!(
        w,
        [
            "rules/r.toml:4:28: rule `r`: `memory_used_pct > 850` compares a percentage (0–100) with 850, so it is never true"
        ]
    );
    let w = warnings(&rule("sample", "when = \"-5 < clients_used_pct\""));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("with -5, so it is always true"), "{w:?}");
    // Arithmetic is left alone: `memory_used_pct * 10` is not a percentage.
    assert!(warnings(&rule("sample", "when = \"memory_used_pct * 10 > 850\"")).is_empty());
}

#[test]
fn a_clear_the_wrong_way_round_warns() {
    let w = warnings(&rule(
        "sample",
        "when = \"memory_used_pct > 85\"\nclear = \"memory_used_pct > 80\"",
    ));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("rules/r.toml:5:10: "), "{w:?}");
    assert!(w[0].contains("wrong way round"), "{w:?}");
    // Overlapping the other way: resolves while still past the threshold.
    let w = warnings(&rule("sample", "when = \"hit_ratio < 80\"\nclear = \"hit_ratio < 85\""));
    assert!(w[0].contains("wrong way round"), "{w:?}");
    let w = warnings(&rule(
        "sample",
        "when = \"mem_fragmentation_ratio > 2.0 && used_memory > 1\"\nclear = \"mem_fragmentation_ratio < 2.5\"",
    ));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("both hold between 2 and 2.50"), "{w:?}");
    // Proper hysteresis, a complement, and forms the check does not read.
    for (when, clear) in [
        ("x_pct > 85", "x_pct < 80"),
        ("hit_ratio < 80", "hit_ratio > 85"),
        ("memory_used_pct >= 85", "memory_used_pct < 85"),
        ("memory_used_pct > 85", "memory_used_pct <= 85"),
        ("memory_used_pct > 85 || used_memory > 1", "memory_used_pct > 80"),
        ("redis_up == 0", "redis_up == 1"),
    ] {
        let w = warnings_with(
            &CONFIG.replace("celery_backlog", "x_pct"),
            &rule("sample", &format!("when = \"{when}\"\nclear = \"{clear}\"")),
            &[],
        );
        assert!(w.iter().all(|w| !w.contains("clear")), "{when} / {clear}: {w:?}");
    }
}

#[test]
fn an_unused_playbook_warns_at_its_file() {
    let w = warnings_with(
        CONFIG,
        &rule("sample", "when = \"memory_used_pct > 85\"\nplaybook = \"used\""),
        &[
            ("used", "log.info(\"x\");\n"),
            ("spare", "log.info(\"y\");\n"),
            (
                "by_hand",
                "// Restores a backup.\n// redops: manual\nlog.info(\"z\");\n",
            ),
        ],
    );
    assert_eq!(w, ["playbooks/spare.rhai:1:1: playbook `spare` is not run by any rule"]);
}

#[test]
fn a_receiver_no_rule_names_warns_only_when_every_rule_names_receivers() {
    let config = format!("{CONFIG}\n[receiver.spare]\ntype = \"log\"\n");
    let named = rule("sample", "when = \"memory_used_pct > 85\"\nnotify = [\"oncall\"]");
    let w = warnings_with(&config, &named, &[]);
    assert_eq!(w, ["redops.toml:15:11: receiver `spare` is never notified"]);
    let unnamed = rule("sample", "when = \"memory_used_pct > 85\"");
    assert!(warnings_with(&config, &unnamed, &[]).is_empty());
    // A playbook that notifies it by name reaches it.
    let with_playbook = format!("{named}playbook = \"tell\"\n");
    let w = warnings_with(&config, &with_playbook, &[("tell", "notify(\"spare\", \"hi\");\n")]);
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn a_playbook_calling_http_warns_while_http_allow_is_not_set() {
    let rules = rule("sample", "when = \"memory_used_pct > 85\"\nplaybook = \"hook\"");
    let hook = "// http.get(\"http://x\") in a comment is no call\nlet r = http.post(params.url, #{ ok: true });\n";
    let w = warnings_with(CONFIG, &rules, &[("hook", hook)]);
    assert_eq!(
        w,
        [
            "playbooks/hook.rhai:2:9: playbook `hook` calls http.post, and [playbooks] http_allow is not set: it may \
          reach any host"
        ]
    );
    let allowing = format!("{CONFIG}\n[playbooks]\nhttp_allow = [\"hooks.example.com\"]\n");
    assert!(warnings_with(&allowing, &rules, &[("hook", hook)]).is_empty());
    // Only a comment, a string or a method of another object: no call.
    let quiet = "// http.post(url)\nlet s = \"http.get(x)\";\nlet h = #{}; h.get(\"a\");\n";
    assert!(warnings_with(CONFIG, &rules, &[("hook", quiet)]).is_empty());
}

#[test]
fn tokens_skip_strings_calls_members_and_keywords() {
    let names: Vec<String> = tokenize("a.len() > 1 && b in [\"c\"] && f(d) && #{ k: e }.k == `t` && true // g")
        .into_iter()
        .filter_map(|t| match t.tok {
            Tok::Ident {
                name,
                call: false,
                member: false,
            } if !is_keyword(&name) => Some(name),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["a", "b", "d", "e"]);
}

#[test]
fn regions_overlap_at_shared_closed_ends_only() {
    assert!(Region::of(">=", 5.0).overlaps(&Region::of("<=", 5.0)));
    assert!(!Region::of(">", 5.0).overlaps(&Region::of("<=", 5.0)));
    assert!(!Region::of(">=", 5.0).overlaps(&Region::of("<", 5.0)));
    assert!(Region::of("<", 200.0).covers(0.0, 100.0));
}

#[test]
fn with_routes_a_rule_without_notify_reaches_only_what_the_routes_name() {
    let config = format!(
        "{CONFIG}\n[receiver.pager]\ntype = \"log\"\n\n[receiver.spare]\ntype = \"log\"\n\n\
         [[route]]\nmatch = {{ severity = \"critical\" }}\nreceivers = [\"pager\"]\n"
    );
    let routed = rule("sample", "when = \"memory_used_pct > 85\"");
    let w = warnings_with(&config, &routed, &[]);
    assert_eq!(
        w,
        [
            "redops.toml:11:11: receiver `oncall` is never notified",
            "redops.toml:18:11: receiver `spare` is never notified",
        ]
    );
    // When every rule names its receivers the routes get nothing.
    let named = rule("sample", "when = \"memory_used_pct > 85\"\nnotify = [\"oncall\"]");
    let w = warnings_with(&config, &named, &[]);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].contains("`pager`") && w[1].contains("`spare`"), "{w:?}");
}
