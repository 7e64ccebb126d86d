//! The dashboard in a real headless Chromium, driven through chromedriver
//! with plain W3C WebDriver JSON: against an engine watching a lab topology
//! (master, replica, three Sentinels), it renders the target with its
//! charts, the Sentinel group, a run and a firing alert whose hostile
//! summary shows as text; Ack with the token acknowledges the alert; and
//! screenshots are saved under target/test-artifacts/.

mod harness;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use harness::{Redops, engine_dir, wait_until};
use serde_json::{Value, json};

const TOKEN: &str = "dashboard-test-token-0123456789";
/// A playbook with one write, run dry so the audit shows it.
const TOUCH: &str = "redis.cmd([\"SET\", \"touched\", \"1\"]);";
/// Markup in an alert summary, as a hostile key name could put there.
const HOSTILE: &str = "<script>window.pwned = 1</script><b>bold</b> <img src=x onerror=\"window.pwned = 2\">";

fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("Failed to create {}: {e}", dir.display()));
    dir
}

/// `chromedriver` on a free port, killed on drop.
struct ChromeDriver {
    child: Child,
    base: String,
}

impl ChromeDriver {
    fn start(binary: &Path) -> ChromeDriver {
        let port = redops::lab::process::free_port().unwrap();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("Failed to start {}: {e}", binary.display()));
        let driver = ChromeDriver {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let ready = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            reqwest::blocking::get(format!("{}/status", driver.base))
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true)
        });
        assert!(ready, "chromedriver did not become ready on {}", driver.base);
        driver
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One headless browser session; ended on drop.
struct Browser {
    http: reqwest::blocking::Client,
    session: String,
}

impl Browser {
    fn open(driver: &ChromeDriver, chromium: &Path) -> Browser {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
                         "--disable-dev-shm-usage"],
            }
        }}});
        let reply: Value = http
            .post(format!("{}/session", driver.base))
            .json(&capabilities)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let session = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {reply}"))
            .to_owned();
        Browser {
            http,
            session: format!("{}/session/{session}", driver.base),
        }
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let request = self.http.request(method, format!("{}{path}", self.session));
        let request = match body {
            Some(b) => request.json(&b),
            None => request,
        };
        let reply: Value = request.send().unwrap().json().unwrap();
        reply["value"].clone()
    }

    fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body))
    }

    fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None)
    }

    fn goto(&self, url: &str) {
        let reply = self.post("/url", json!({ "url": url }));
        assert!(reply.is_null(), "navigation failed: {reply}");
    }

    /// Runs a script in the page and returns its value.
    fn eval(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": [] }))
    }

    /// The element ids matching a CSS selector now.
    fn find_all(&self, css: &str) -> Vec<String> {
        let found = self.post("/elements", json!({ "using": "css selector", "value": css }));
        found
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|e| e.as_object()?.values().next()?.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Polls until `css` matches; panics with the page's text if it never does.
    fn wait_for(&self, css: &str, timeout: Duration) -> String {
        let mut found = None;
        // Whether it rendered in time is `found`, looked at below.
        let _rendered = wait_until(timeout, Duration::from_millis(200), || {
            found = self.find_all(css).into_iter().next();
            found.is_some()
        });
        found.unwrap_or_else(|| {
            panic!(
                "`{css}` did not render within {timeout:?}; the page says:\n{}",
                self.eval("return document.body.innerText")
            )
        })
    }

    /// The rendered text of the first element matching `css`, retried when
    /// a refresh replaced the element between finding and reading it.
    fn text_of(&self, css: &str) -> String {
        let mut text = None;
        // Whether it was read in time is `text`, looked at below.
        let _read = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            let Some(id) = self.find_all(css).into_iter().next() else {
                return false;
            };
            text = self.get(&format!("/element/{id}/text")).as_str().map(str::to_owned);
            text.is_some()
        });
        text.unwrap_or_else(|| panic!("no text for `{css}`"))
    }

    /// Clicks the first element matching `css`, retried as `text_of`.
    fn click(&self, css: &str) {
        let clicked = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            let Some(id) = self.find_all(css).into_iter().next() else {
                return false;
            };
            self.post(&format!("/element/{id}/click"), json!({})).is_null()
        });
        assert!(clicked, "could not click `{css}`");
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.wait_for(css, Duration::from_secs(5));
        let reply = self.post(&format!("/element/{id}/value"), json!({ "text": text }));
        assert!(reply.is_null(), "typing into `{css}` failed: {reply}");
    }

    fn screenshot(&self, path: &Path) {
        let encoded = self.get("/screenshot");
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("a screenshot is base64 text"))
            .expect("the screenshot decodes");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("Failed to write {}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.http.delete(&self.session).send();
    }
}

#[test]
fn the_dashboard_renders_a_lab_and_acknowledges_an_alert_in_chromium() {
    let (Some(chromium), Some(chromedriver)) = (
        harness::required_tool("chromium"),
        harness::required_tool("chromedriver"),
    ) else {
        return;
    };
    let lab_dir = tempfile::tempdir().unwrap();
    let lab = redops::lab::topology::Topology::start(lab_dir.path()).unwrap();
    let port = redops::lab::process::free_port().unwrap();
    let sentinels: Vec<String> = lab.sentinel_addrs().iter().map(|a| format!("\"{a}\"")).collect();
    let config = format!(
        "[[target]]\nname = \"cache\"\nurl = \"{}\"\n\n\
         [[sentinel]]\nname = \"lab\"\nmaster = \"{}\"\nsentinels = [{}]\n\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"${{REDOPS_TEST_API_TOKEN}}\"\n",
        lab.master().url(0),
        redops::lab::topology::MASTER_NAME,
        sentinels.join(", ")
    );
    let rules = format!(
        "[[rule]]\nname = \"hostile\"\nsource = \"sample\"\ntargets = [\"cache\"]\nwhen = \"redis_up == 1\"\n\
         severity = \"critical\"\nsummary = '{HOSTILE} on {{{{ target }}}}'\n"
    );
    let dir = engine_dir("500ms", &config, &[("hostile", &rules)], &[("touch", TOUCH)]);
    let mut redops = Redops::start_with_env(dir.path(), &[], &[("REDOPS_TEST_API_TOKEN", TOKEN)]);
    redops.wait_log("API listening", Duration::from_secs(10));
    let base = format!("http://127.0.0.1:{port}");
    let api = reqwest::blocking::Client::new();
    let run = api
        .post(format!("{base}/api/v1/playbooks/touch/run"))
        .bearer_auth(TOKEN)
        .json(&json!({ "target": "cache", "dry_run": true }))
        .send()
        .unwrap();
    assert_eq!(run.status(), 202);

    let driver = ChromeDriver::start(&chromedriver);
    let browser = Browser::open(&driver, &chromium);
    browser.goto(&base);
    let long = Duration::from_secs(30);

    // The target with its five numbers and its charts.
    browser.wait_for(
        "article.target[data-target='cache'] .tile[data-metric='memory_used_pct']",
        long,
    );
    let tiles = browser.text_of("article.target[data-target='cache'] .tiles");
    for label in ["Memory", "Hit ratio", "Fragmentation", "Clients", "Ops/s"] {
        assert!(tiles.contains(label), "{tiles}");
    }
    browser.wait_for(
        "article.target[data-target='cache'] figure[data-range='1h'] svg.line-chart polyline",
        long,
    );
    // A week of history needs minute rollups: a chart, or the "no history yet" placeholder.
    let week = "article.target[data-target='cache'] figure[data-range='7d']";
    browser.wait_for(&format!("{week} svg.line-chart, {week} p.no-history"), long);
    // The group's nodes are targets too; the group itself is a Sentinel group.
    browser.wait_for(
        &format!("article.target[data-target='lab/{}']", lab.replica_addr()),
        long,
    );
    assert!(browser.find_all("article.target[data-target='lab']").is_empty());

    // The Sentinel topology.
    browser.wait_for("article.sentinel-group[data-group='lab'] dd.master", long);
    assert_eq!(
        browser.text_of("article.sentinel-group[data-group='lab'] dd.master"),
        lab.master_addr()
    );
    assert_eq!(
        browser
            .text_of("article.sentinel-group[data-group='lab'] li.replica")
            .split(' ')
            .next(),
        Some(lab.replica_addr().as_str())
    );
    let group = browser.text_of("article.sentinel-group[data-group='lab']");
    assert!(group.contains("2 needed, 3 of 3 Sentinels reachable"), "{group}");

    // The run, with its audit when opened.
    browser.wait_for("details.run.outcome-succeeded", long);
    assert!(browser.text_of("details.run summary").contains("touch on cache"));
    browser.click("details.run summary");
    browser.wait_for("details.run table.audit td.mono", Duration::from_secs(10));
    assert_eq!(browser.text_of("details.run table.audit td.mono"), "SET touched 1");

    // The firing alert, its markup shown as text and never run.
    browser.wait_for("tr.alert.severity-critical button.ack", long);
    let summary = browser.text_of("tr.alert td.summary");
    assert_eq!(summary, format!("{HOSTILE} on cache"));
    let injected = browser.eval(
        "return { pwned: window.pwned === undefined ? null : window.pwned, \
                  elements: document.querySelectorAll('#alerts script, #alerts b, #alerts img').length }",
    );
    assert_eq!(
        injected,
        json!({ "pwned": null, "elements": 0 }),
        "the summary was parsed as HTML"
    );
    // Tall enough for every section in the artifact.
    browser.post("/window/rect", json!({ "width": 1280, "height": 1700 }));
    let screenshots = artifacts_dir();
    browser.screenshot(&screenshots.join("dashboard.png"));

    // Ack asks for the token once, keeps it for the tab, and acknowledges.
    browser.click("tr.alert button.ack");
    browser.wait_for("#token-panel:not([hidden]) #token-input", Duration::from_secs(5));
    browser.type_into("#token-input", TOKEN);
    browser.click("#token-save");
    let mut alerts = Value::Null;
    let acked = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        alerts = api.get(format!("{base}/api/v1/alerts")).send().unwrap().json().unwrap();
        alerts[0]["acked_by"] == "dashboard"
    });
    assert!(acked, "the alert was not acknowledged: {alerts}");
    browser.wait_for("tr.alert span.acked", Duration::from_secs(10));
    assert_eq!(
        browser.eval("return sessionStorage.getItem('redops.api-token')"),
        json!(TOKEN)
    );

    // On a phone: one column, nothing wider than the screen.
    let resized = browser.post("/window/rect", json!({ "width": 390, "height": 844 }));
    assert!(resized["width"].as_i64().is_some(), "{resized}");
    let fits = wait_until(Duration::from_secs(5), Duration::from_millis(200), || {
        browser.eval("return document.documentElement.scrollWidth <= window.innerWidth") == json!(true)
    });
    assert!(
        fits,
        "the page is wider than a phone: {}",
        browser.eval("return [document.documentElement.scrollWidth, window.innerWidth]")
    );
    browser.screenshot(&screenshots.join("dashboard-phone.png"));
    drop(browser);
    assert!(redops.terminate().success(), "{}", redops.output());
}
