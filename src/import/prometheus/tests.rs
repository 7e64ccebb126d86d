//! Rule files in, rule files out: layout, comments, locations and the
//! rules that do not translate.

use super::*;

const FILE: &str = "alerts.yml";

#[test]
fn an_alert_becomes_a_rule_with_its_fields() {
    let yaml = r#"
groups:
  - name: redis
    labels:
      team: cache
    rules:
      - alert: RedisRejectedConnections
        expr: increase(redis_rejected_connections_total[1m]) > 0
        for: 1m30s
        keep_firing_for: 5m
        labels:
          severity: page
          service: django
        annotations:
          summary: Rejected on {{ $labels.instance }} ({{ $value | humanize }})
          runbook_url: https://runbooks.example.com/redis
          dashboard: https://grafana.example.com/d/redis
"#;
    let out = import_str(FILE, yaml).unwrap();
    assert_eq!(out.translated, ["RedisRejectedConnections"]);
    assert!(out.not_translated.is_empty());
    let rule = out.toml.split_once("[[rule]]\n").unwrap().1;
    assert_eq!(
        rule,
        r#"name = "RedisRejectedConnections"
source = "sample"
when = 'avg_over("rejected_connections_per_sec", "1m") * 60 > 0'
for = "1m 30s"
keep_firing_for = "5m"
severity = "critical"
summary = "Rejected on {{ target }} ({{ value|humanize }})"
runbook = "https://runbooks.example.com/redis"
annotations = { dashboard = "https://grafana.example.com/d/redis" }
labels = { service = "django", team = "cache" }

"#
    );
    assert!(
        out.toml
            .contains("# RedisRejectedConnections (alerts.yml:7:9, group \"redis\")\n"),
        "{}",
        out.toml
    );
    assert!(
        out.toml.contains("# note: severity \"page\" is written critical\n"),
        "{}",
        out.toml
    );
    assert!(!out.toml.contains("not imported"), "{}", out.toml);
}

#[test]
fn an_untranslatable_rule_is_commented_out_with_its_reason() {
    let yaml = "groups:\n- name: g\n  rules:\n  - alert: Predict\n    expr: predict_linear(redis_memory_used_bytes[1h], 3600) > 1e9\n  - record: job:redis_up:sum\n    expr: sum(redis_up)\n";
    let out = import_str(FILE, yaml).unwrap();
    assert!(out.translated.is_empty());
    assert_eq!(
        out.not_translated,
        [
            NotTranslated {
                name: "Predict".into(),
                at: "alerts.yml:4:5".into(),
                reason: "predict_linear() has no redops equivalent".into(),
            },
            NotTranslated {
                name: "job:redis_up:sum".into(),
                at: "alerts.yml:6:5".into(),
                reason: "a recording rule: redops has none; an alert reading its series needs its expression instead"
                    .into(),
            },
        ]
    );
    assert!(
        out.toml
            .contains("# NOT TRANSLATED: predict_linear() has no redops equivalent\n")
    );
    // Every line of the rule is a comment: the file loads with nothing in it.
    let parsed: toml::Table = out.toml.parse().unwrap();
    assert!(parsed.is_empty(), "{parsed:?}");
    assert!(out.toml.contains("# [[rule]]\n# name = \"Predict\"\n"), "{}", out.toml);
}

#[test]
fn repeated_alert_names_are_made_unique() {
    let yaml = "groups:\n- name: g\n  rules:\n  - alert: Down\n    expr: redis_up == 0\n  - alert: Down\n    expr: redis_master_link_up == 0\n";
    let out = import_str(FILE, yaml).unwrap();
    assert_eq!(out.translated, ["Down", "Down_2"]);
    assert!(out.toml.contains("renamed Down_2"), "{}", out.toml);
}

#[test]
fn yaml_errors_name_file_line_and_column() {
    let err = import_str(
        FILE,
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: redis_up == 0\n    fro: 5m\n",
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("alerts.yml:6:"), "{text}");
    assert!(text.contains("fro"), "{text}");
    let err = import_str(FILE, "groups:\n  - name: [unclosed\n").unwrap_err();
    assert!(err.to_string().starts_with("alerts.yml:"), "{err}");
}

#[test]
fn prometheus_durations() {
    assert_eq!(prom_duration("0m"), Ok(Duration::ZERO));
    assert_eq!(prom_duration("1h30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(prom_duration("1d"), Ok(Duration::from_secs(86_400)));
    assert_eq!(prom_duration("250ms"), Ok(Duration::from_millis(250)));
    assert!(prom_duration("5 minutes").is_err());
    assert!(prom_duration("").is_err());
}
