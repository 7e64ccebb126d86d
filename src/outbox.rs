//! The durable outbox: every notification is written here, per receiver,
//! before any delivery is tried, and marked delivered only once the receiver
//! accepted it. A restart — even after `kill -9` — resumes what is pending.
//! A notification retried past its receiver's give-up time is dead-lettered.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{OptionalExtension, params};

use crate::store::{Store, StoreError};

#[derive(Clone)]
pub struct Outbox {
    store: Store,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub id: i64,
    pub receiver: String,
    pub idempotency_key: String,
    /// The notification, as JSON.
    pub payload: String,
    pub created_ms: i64,
    pub next_attempt_ms: i64,
    pub attempts: i64,
}

impl Entry {
    /// A row selected as `id, receiver, idempotency_key, payload,
    /// created_ms, next_attempt_ms, attempts`.
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
        Ok(Entry {
            id: r.get(0)?,
            receiver: r.get(1)?,
            idempotency_key: r.get(2)?,
            payload: r.get(3)?,
            created_ms: r.get(4)?,
            next_attempt_ms: r.get(5)?,
            attempts: r.get(6)?,
        })
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

impl Outbox {
    /// The table is made by the store's migrations.
    pub fn open(store: Store) -> Result<Outbox, StoreError> {
        Ok(Outbox { store })
    }

    /// Writes a notification for each receiver in one transaction.
    pub fn enqueue(&self, receivers: &[String], idempotency_key: &str, payload: &str) -> Result<(), StoreError> {
        let now = now_ms();
        let mut conn = self.store.conn();
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO outbox (receiver, idempotency_key, payload, created_ms, next_attempt_ms)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
            )?;
            for r in receivers {
                insert.execute(params![r, idempotency_key, payload, now])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Whether a notification with this idempotency key was ever queued
    /// (pending, delivered or given up), for any receiver.
    pub fn queued(&self, idempotency_key: &str) -> Result<bool, StoreError> {
        let conn = self.store.conn();
        let mut stmt = conn.prepare_cached("SELECT 1 FROM outbox WHERE idempotency_key = ?1 LIMIT 1")?;
        Ok(stmt.exists(params![idempotency_key])?)
    }

    /// The oldest pending notification of a receiver: delivery is in order,
    /// so nothing behind it goes first.
    pub fn head(&self, receiver: &str) -> Result<Option<Entry>, StoreError> {
        let conn = self.store.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, receiver, idempotency_key, payload, created_ms, next_attempt_ms, attempts
             FROM outbox WHERE receiver = ?1 AND state = 'pending' ORDER BY id LIMIT 1",
        )?;
        Ok(stmt.query_row(params![receiver], Entry::from_row).optional()?)
    }

    /// Takes a due entry for one delivery attempt: it is not due again for
    /// `lease`, so another process delivering from the same outbox (`redops
    /// playbook run` next to the engine) skips it. False when someone else
    /// took it first. A lease left by a crash ends with it, or at the next
    /// start ([`Outbox::resume_now`]).
    pub fn claim(&self, id: i64, lease: Duration) -> Result<bool, StoreError> {
        let now = now_ms();
        Ok(self.store.conn().execute(
            "UPDATE outbox SET next_attempt_ms = ?2
             WHERE id = ?1 AND state = 'pending' AND next_attempt_ms <= ?3",
            params![id, now + lease.as_millis() as i64, now],
        )? == 1)
    }

    /// Gives back a claim without an attempt: the entry is due again now.
    pub fn release(&self, id: i64) -> Result<(), StoreError> {
        self.store.conn().execute(
            "UPDATE outbox SET next_attempt_ms = ?2 WHERE id = ?1 AND state = 'pending'",
            params![id, now_ms()],
        )?;
        Ok(())
    }

    pub fn delivered(&self, id: i64) -> Result<(), StoreError> {
        self.store.conn().execute(
            "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, done_ms = ?2, last_error = NULL
             WHERE id = ?1",
            params![id, now_ms()],
        )?;
        Ok(())
    }

    /// Another redops instance, the HA leader, delivered this one: the
    /// copy is done without being sent, and says so.
    pub fn delivered_by_peer(&self, id: i64) -> Result<(), StoreError> {
        self.store.conn().execute(
            "UPDATE outbox SET state = 'delivered_by_peer', done_ms = ?2, last_error = NULL WHERE id = ?1",
            params![id, now_ms()],
        )?;
        Ok(())
    }

    /// The oldest pending entries of every receiver, at most `limit`.
    pub fn pending_entries(&self, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let conn = self.store.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, receiver, idempotency_key, payload, created_ms, next_attempt_ms, attempts
             FROM outbox WHERE state = 'pending' ORDER BY id LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit as i64], Entry::from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn retry_later(&self, id: i64, wait: Duration, error: &str) -> Result<(), StoreError> {
        self.store.conn().execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3 WHERE id = ?1",
            params![id, now_ms() + wait.as_millis() as i64, error],
        )?;
        Ok(())
    }

    pub fn dead(&self, id: i64, error: &str) -> Result<(), StoreError> {
        self.store.conn().execute(
            "UPDATE outbox SET state = 'dead', attempts = attempts + 1, done_ms = ?2, last_error = ?3 WHERE id = ?1",
            params![id, now_ms(), error],
        )?;
        Ok(())
    }

    /// At start, whatever is pending is tried at once: the backoff it had
    /// was about a receiver that may have recovered while redops was down.
    pub fn resume_now(&self) -> Result<usize, StoreError> {
        Ok(self.store.conn().execute(
            "UPDATE outbox SET next_attempt_ms = ?1 WHERE state = 'pending' AND next_attempt_ms > ?1",
            params![now_ms()],
        )?)
    }

    /// Notifications not yet delivered, per receiver.
    pub fn pending(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let conn = self.store.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT receiver, COUNT(*) FROM outbox WHERE state = 'pending' GROUP BY receiver ORDER BY receiver",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Drops delivered and dead entries older than `keep`, so the file stays small.
    pub fn prune(&self, keep: Duration) -> Result<usize, StoreError> {
        let cutoff = now_ms() - keep.as_millis() as i64;
        Ok(self.store.conn().execute(
            "DELETE FROM outbox WHERE state != 'pending' AND done_ms < ?1",
            params![cutoff],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_out_in_order_per_receiver_until_delivered() {
        let outbox = Outbox::open(Store::in_memory()).unwrap();
        outbox.enqueue(&["a".into(), "b".into()], "k1", "{\"n\":1}").unwrap();
        outbox.enqueue(&["a".into()], "k2", "{\"n\":2}").unwrap();
        let first = outbox.head("a").unwrap().unwrap();
        assert_eq!(first.idempotency_key, "k1");
        outbox
            .retry_later(first.id, Duration::from_secs(5), "HTTP 500")
            .unwrap();
        // Still the head: nothing overtakes a notification being retried.
        let again = outbox.head("a").unwrap().unwrap();
        assert_eq!((again.id, again.attempts), (first.id, 1));
        assert!(again.next_attempt_ms > first.next_attempt_ms);
        outbox.delivered(first.id).unwrap();
        assert_eq!(outbox.head("a").unwrap().unwrap().idempotency_key, "k2");
        assert_eq!(
            outbox.pending().unwrap(),
            vec![("a".to_string(), 1), ("b".to_string(), 1)]
        );
    }

    #[test]
    fn a_claimed_entry_is_taken_once_and_pruning_keeps_what_is_pending() {
        let outbox = Outbox::open(Store::in_memory()).unwrap();
        outbox.enqueue(&["a".into()], "k1", "{}").unwrap();
        outbox.enqueue(&["a".into()], "k2", "{}").unwrap();
        let head = outbox.head("a").unwrap().unwrap();
        assert!(outbox.claim(head.id, Duration::from_secs(30)).unwrap());
        assert!(
            !outbox.claim(head.id, Duration::from_secs(30)).unwrap(),
            "taken already"
        );
        outbox.delivered(head.id).unwrap();
        // Done long ago: pruned; the pending one stays.
        outbox
            .store
            .conn()
            .execute("UPDATE outbox SET done_ms = 0 WHERE id = ?1", params![head.id])
            .unwrap();
        assert_eq!(outbox.prune(Duration::from_secs(3600)).unwrap(), 1);
        assert_eq!(outbox.pending().unwrap(), vec![("a".to_string(), 1)]);
    }
}
