//! Rule annotations end to end: a rule with templated annotations fires on
//! a real redis-server, and the rendered text reaches a real webhook
//! receiver (redops's JSON and Alertmanager's format) and a real SMTP
//! server.

mod harness;

use std::time::Duration;

use harness::{Redops, SmtpServer, TestRedis, WebhookReceiver, alerts, engine_dir};

const RULE: &str = r#"[[rule]]
name = "marker_high"
source = "sample"
when = "marker >= 1"
severity = "warning"
summary = "marker {{ value|humanize }} on {{ target }}"
description = "{{ target|toUpper }} holds {{ value|humanize }} ({{ labels.env }})"
annotations = { bytes = "{{ value|humanize1024 }}B", level = "{% if value > 1000 %}big{% else %}small{% endif %}", uptime = "{{ 3661|humanizeDuration }}", ratio = "{{ printf('%.1f', value / 1000000) }}" }
"#;

#[test]
fn rendered_annotations_reach_webhooks_alertmanager_and_email() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    let smtp = SmtpServer::start(None);
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\nprobes = {{ marker = \"GET marker\" }}\nlabels = {{ env = \"prod\" }}\n\n\
         [receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n\n\
         [receiver.am]\ntype = \"webhook\"\nformat = \"alertmanager\"\nurl = \"{}\"\n\n\
         [receiver.mail]\ntype = \"email\"\nsmtp = \"smtp://localhost:{}\"\nfrom = \"redops@example.com\"\n\
         to = [\"oncall@example.com\"]\ntls = \"none\"\n",
        redis.url(0),
        hook.url_for("/generic"),
        hook.url_for("/am"),
        smtp.port()
    );
    let dir = engine_dir("300ms", &config, &[("marker", RULE)], &[]);
    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("Engine started", Duration::from_secs(10));

    redis.cli(&["SET", "marker", "1234567"]);
    let got = hook.wait_for(Duration::from_secs(15), |r| {
        r.iter().any(|r| r.path == "/am") && !alerts(r, "marker_high", "firing").is_empty()
    });

    let generic = alerts(&got, "marker_high", "firing");
    let generic = &generic.first().unwrap_or_else(|| panic!("{}", hook.describe())).body;
    assert_eq!(generic["summary"], "marker 1.235M on cache", "{generic}");
    assert_eq!(generic["description"], "CACHE holds 1.235M (prod)", "{generic}");
    assert_eq!(
        generic["annotations"],
        serde_json::json!({
            "bytes": "1.177MiB",
            "description": "CACHE holds 1.235M (prod)",
            "level": "big",
            "ratio": "1.2",
            "uptime": "1h 1m 1s",
        }),
        "{generic}"
    );

    let am = got.iter().find(|r| r.path == "/am").expect("waited for above");
    let annotations = &am.body[0]["annotations"];
    assert_eq!(annotations["summary"], "marker 1.235M on cache", "{}", am.body);
    assert_eq!(annotations["description"], "CACHE holds 1.235M (prod)", "{}", am.body);
    assert_eq!(annotations["bytes"], "1.177MiB", "{}", am.body);
    assert_eq!(annotations["level"], "big", "{}", am.body);

    let mails = smtp.wait_for_mails(1, Duration::from_secs(15));
    let mail = &mails[0];
    assert!(mail.contains("marker 1.235M on cache"), "{mail}");
    assert!(mail.contains("Description: CACHE holds 1.235M (prod)"), "{mail}");
    assert!(mail.contains("Bytes: 1.177MiB"), "{mail}");
    assert!(mail.contains("Uptime: 1h 1m 1s"), "{mail}");
    assert!(redops.terminate().success(), "{}", redops.output());
}

#[test]
fn a_template_that_fails_at_run_time_still_notifies_with_its_raw_text() {
    let redis = TestRedis::start(&[]);
    let hook = WebhookReceiver::start();
    // `humanize` of a text value fails only when it renders.
    let rule = "[[rule]]\nname = \"worded\"\nsource = \"sample\"\nwhen = \"marker >= 1\"\n\
                annotations = { text = \"{{ role|humanize }}\" }\n";
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\nprobes = {{ marker = \"GET marker\" }}\n\n\
         [receiver.hook]\ntype = \"webhook\"\nurl = \"{}\"\n",
        redis.url(0),
        hook.url()
    );
    let dir = engine_dir("300ms", &config, &[("worded", rule)], &[]);
    let mut redops = Redops::start(dir.path(), &[]);
    redops.wait_log("Engine started", Duration::from_secs(10));

    redis.cli(&["SET", "marker", "1"]);
    let got = hook.wait_for(Duration::from_secs(15), |r| !alerts(r, "worded", "firing").is_empty());
    let alert = &alerts(&got, "worded", "firing")[0].body;
    assert_eq!(alert["annotations"]["text"], "{{ role|humanize }}", "{alert}");
    redops.wait_log("Template failed to render", Duration::from_secs(5));
    assert!(redops.terminate().success(), "{}", redops.output());
}
