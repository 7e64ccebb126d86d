//! Outbox benchmark: throughput of durable deliveries to a local webhook
//! receiver, and the latency the outbox adds between an alert change and
//! the HTTP request leaving. Run: `cargo run --release --example bench_notify`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::routing::post;
use redops::alerts::{Alert, AlertStatus, Severity, fingerprint};
use redops::config::{Config, ReceiverConfig};
use redops::diagnostics::{Diagnostics, SourceFile};
use redops::notify::{AlertNotice, Notification, Notifier};
use redops::outbox::Outbox;
use redops::store::Store;
use tokio_util::sync::CancellationToken;

fn alert(i: usize) -> Notification {
    let (rule, target) = (format!("bench_{i}"), "cache".to_owned());
    Notification::Alert(Box::new(AlertNotice::new(Alert {
        fingerprint: fingerprint(&rule, &target),
        labels: Default::default(),
        rule,
        target,
        severity: Severity::Warning,
        status: AlertStatus::Firing,
        summary: "bench".into(),
        value: None,
        starts_at: SystemTime::now(),
        ends_at: None,
        runbook: None,
        description: None,
        annotations: Default::default(),
    })))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let a = arrivals.clone();
    let app = Router::new().route(
        "/hook",
        post(move || {
            let a = a.clone();
            async move {
                a.lock().unwrap().push(Instant::now());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let text = format!("[receiver.hook]\ntype = \"webhook\"\nurl = \"{url}\"\n");
    let config = Config::parse(&SourceFile::new("bench.toml", text), &mut Diagnostics::default()).unwrap();
    assert!(matches!(config.receivers["hook"], ReceiverConfig::Webhook(_)));
    let store = Store::open(dir.path()).unwrap();
    let shutdown = CancellationToken::new();
    let (notifier, handle) =
        Notifier::spawn(&config.receivers, Outbox::open(store).unwrap(), None, shutdown.clone()).unwrap();
    let receivers = vec!["hook".to_string()];

    // Latency: one notification at a time, from send() to the request arriving.
    let mut latencies = Vec::new();
    for i in 0..500 {
        let before = arrivals.lock().unwrap().len();
        let sent = Instant::now();
        notifier.send(&receivers, &alert(i));
        loop {
            if let Some(at) = arrivals.lock().unwrap().get(before) {
                latencies.push(at.duration_since(sent));
                break;
            }
            tokio::time::sleep(Duration::from_micros(50)).await;
        }
    }
    latencies.sort();

    // Throughput: a burst written at once, delivered in order.
    let n = 5000;
    let before = arrivals.lock().unwrap().len();
    let start = Instant::now();
    for i in 0..n {
        notifier.send(&receivers, &alert(10_000 + i));
    }
    let enqueued = start.elapsed();
    while arrivals.lock().unwrap().len() < before + n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let total = start.elapsed();
    println!("outbox latency (send -> HTTP request at receiver), 500 sequential notifications:");
    println!(
        "  p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3
    );
    println!("outbox throughput, {n} notifications to one receiver (durable, in order):");
    println!(
        "  enqueue {:.0}/s   delivered {:.0}/s   ({:.2} s in all)",
        n as f64 / enqueued.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
        total.as_secs_f64()
    );
    shutdown.cancel();
    drop(notifier);
    handle.join().await;
}
