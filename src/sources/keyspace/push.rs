//! The redis-rs reader (`[engine] keyspace_reader = "redis-rs"`, and the
//! fallback for what the RESP reader does not do: `rediss://` and Unix
//! socket targets). Each keyevent reaches redis-rs's connection task as a
//! RESP3 push, which it hands to a bounded queue and never waits: when the
//! queue is full the event is dropped and counted in `events_lost_total`.
//! The source's task drains the queue and counts. It needs Redis >= 6 (RESP3)
//! and costs ~1.6 µs of CPU an event (BENCHMARKS.md), three times the RESP
//! reader's: redis-rs builds a `Value` per frame and the queue moves three
//! `Vec`s per event.

use std::sync::Arc;

use redis::aio::{AsyncPushSender, SendError};
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Ended, KeyspaceSource, KeyspaceStats, ensure_flags_if_asked};

/// Events between the reader and the counter. At 200k events/s this is
/// ~160 ms of slack for a counter that loses its core; each queued event
/// holds its channel name and key (~100 bytes).
pub(super) const QUEUE: usize = 32_768;
/// Events counted between two looks at the clock, so that counts go out on
/// time during a storm.
const BATCH: usize = 256;

/// A keyevent as the reader hands it to the counter.
pub(super) struct KeyEvent {
    channel: Vec<u8>,
    key: Vec<u8>,
}

impl KeyEvent {
    /// A `pmessage` push is `[pattern, channel, payload]`.
    fn from_pmessage(data: Vec<Value>) -> Option<Self> {
        let mut data = data.into_iter().skip(1);
        match (data.next(), data.next()) {
            (Some(Value::BulkString(channel)), Some(Value::BulkString(key))) => Some(KeyEvent { channel, key }),
            _ => None,
        }
    }
}

/// The queue between redis-rs's task and the counter; it outlives
/// reconnections.
pub(super) struct Queue {
    tx: mpsc::Sender<KeyEvent>,
    rx: mpsc::Receiver<KeyEvent>,
}

impl Queue {
    pub(super) fn new() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Queue { tx, rx }
    }
}

/// The reader's half. It runs inside redis-rs's connection task, so it
/// must never wait: it moves each event into the bounded queue or, when
/// the counter is that far behind, drops and counts it.
struct PushReader {
    queue: mpsc::Sender<KeyEvent>,
    stats: Arc<KeyspaceStats>,
    /// Told when the connection ends, whoever ended it.
    lost_connection: Arc<Notify>,
}

impl AsyncPushSender for PushReader {
    fn send(&self, info: PushInfo) -> Result<(), SendError> {
        match info.kind {
            PushKind::PMessage => {
                if let Some(event) = KeyEvent::from_pmessage(info.data)
                    && let Err(mpsc::error::TrySendError::Full(_)) = self.queue.try_send(event)
                {
                    self.stats.record_lost();
                }
            }
            PushKind::Disconnection => self.lost_connection.notify_one(),
            _ => {}
        }
        Ok(())
    }
}

/// A live redis-rs subscription: dropping it closes the connection.
pub(super) struct PushSubscription {
    _connection: redis::aio::MultiplexedConnection,
    lost: Arc<Notify>,
}

impl KeyspaceSource {
    /// A RESP3 connection whose pushes go to a fresh [`PushReader`],
    /// subscribed to the counter's patterns, with the flags ensured first
    /// (again on each reconnect: a restarted server forgot them).
    pub(super) async fn subscribe_push(&mut self) -> redis::RedisResult<PushSubscription> {
        ensure_flags_if_asked(&self.spec).await;
        let info = &self.spec.connection;
        let resp3 = info.clone().set_redis_settings(
            info.redis_settings()
                .clone()
                .set_protocol(redis::ProtocolVersion::RESP3),
        );
        let queue = self.push_queue.get_or_insert_with(Queue::new);
        let lost = Arc::new(Notify::new());
        let reader = PushReader {
            queue: queue.tx.clone(),
            stats: self.spec.stats.clone(),
            lost_connection: lost.clone(),
        };
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.spec.connect_timeout))
            .set_response_timeout(Some(self.spec.connect_timeout))
            .set_push_sender(reader);
        let mut connection = redis::Client::open(resp3)?
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        connection.psubscribe(self.counter.patterns()).await?;
        Ok(PushSubscription {
            _connection: connection,
            lost,
        })
    }

    /// Counts queued events in batches, emitting between batches when due,
    /// until the connection is lost or the engine stops.
    pub(super) async fn count_pushes_until_lost(
        &mut self,
        subscription: &PushSubscription,
        shutdown: &CancellationToken,
    ) -> Ended {
        let mut queue = self.push_queue.take().expect("subscribed through the queue");
        let ended = self.count_queue(&mut queue.rx, &subscription.lost, shutdown).await;
        self.push_queue = Some(queue);
        ended
    }

    async fn count_queue(
        &mut self,
        queue: &mut mpsc::Receiver<KeyEvent>,
        lost: &Notify,
        shutdown: &CancellationToken,
    ) -> Ended {
        // Grows to `BATCH` on first use: an idle subscription allocates nothing.
        let mut batch = Vec::new();
        loop {
            let due: Instant = self.next_emit();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ended::Stopped,
                // Before the queue: during a storm counts still go out on time.
                _ = tokio::time::sleep_until(due) => {
                    if !self.emit() {
                        return Ended::Stopped;
                    }
                }
                _ = lost.notified() => {
                    // What the reader queued before the end was received: count it.
                    while let Ok(event) = queue.try_recv() {
                        self.counter.observe(&event.channel, &event.key);
                    }
                    return Ended::Lost;
                }
                _ = queue.recv_many(&mut batch, BATCH) => {
                    for event in batch.drain(..) {
                        self.counter.observe(&event.channel, &event.key);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn pmessage(key: &str) -> PushInfo {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        PushInfo {
            kind: PushKind::PMessage,
            data: vec![bulk("__keyevent@*__:set"), bulk("__keyevent@0__:set"), bulk(key)],
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (queue, mut rx) = mpsc::channel(2);
        let stats = Arc::new(KeyspaceStats::default());
        let reader = PushReader {
            queue,
            stats: stats.clone(),
            lost_connection: Arc::new(Notify::new()),
        };
        for key in ["a", "b", "c", "d", "e"] {
            reader.send(pmessage(key)).unwrap();
        }
        let metrics = stats.metrics();
        assert_eq!(
            &metrics[..2],
            [("events_lost_total", 3.0), ("keyspace_disconnects_total", 0.0)]
        );
        assert_eq!(metrics[2].0, "seconds_since_events_lost");
        assert!(metrics[2].1 < 5.0, "{metrics:?}");
        assert_eq!(metrics.len(), 3, "no disconnect yet: {metrics:?}");
        let first = rx.try_recv().unwrap();
        assert_eq!(
            (&first.channel[..], &first.key[..]),
            (&b"__keyevent@0__:set"[..], &b"a"[..])
        );
        // Room again: nothing more is lost.
        reader.send(pmessage("f")).unwrap();
        assert_eq!(stats.metrics()[0], ("events_lost_total", 3.0));
    }

    #[tokio::test]
    async fn the_reader_tells_the_counter_when_the_connection_ends() {
        let (queue, _rx) = mpsc::channel(2);
        let lost = Arc::new(Notify::new());
        let reader = PushReader {
            queue,
            stats: Arc::default(),
            lost_connection: lost.clone(),
        };
        reader
            .send(PushInfo {
                kind: PushKind::PSubscribe,
                data: vec![],
            })
            .unwrap();
        reader
            .send(PushInfo {
                kind: PushKind::Disconnection,
                data: vec![],
            })
            .unwrap();
        // The permit waits for the counter even if it was busy counting.
        tokio::time::timeout(Duration::from_secs(1), lost.notified())
            .await
            .expect("no disconnect notice");
    }
}
