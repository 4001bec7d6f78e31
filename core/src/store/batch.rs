//! Group commit on SQLite for the writes an acknowledgement waits on (replay checks, wizard
//! drafts and audited refusals) and for the workers' step results (finished, retried,
//! looked again), of which a bulk offboarding writes hundreds a second. Every caller in
//! flight hands its write to one writer,
//! which commits whatever has queued in one transaction. Hundreds of acknowledgements a
//! second then share a few waits for the disk, and no two connections fight over SQLite's
//! write lock (whose busy handler sleeps in whole milliseconds). Each write is still on
//! disk before its request is answered. Postgres already commits concurrent transactions
//! together; one writer per process there was measured slower (B1), so it is not used.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::sql::sqlite;
use super::{Claim, Result, StoreError};
use crate::audit::{AuditKey, NewAudit};
use crate::domain::RunId;
use crate::outbox::EventKind;
use crate::run::StepOutcome;

/// The most writes one transaction takes.
const MAX_BATCH: usize = 256;
/// Writes waiting beyond this make their callers wait to queue.
const QUEUE: usize = 4096;

pub(super) enum Write {
    Delivery { source: String, key: String, now: DateTime<Utc>, ttl: chrono::Duration },
    SaveDraft { key: String, draft: String, expires: DateTime<Utc> },
    DeleteDraft { key: String },
    Refusal { audit: NewAudit, seal: Option<Arc<AuditKey>>, event: Option<(RunId, EventKind)>, now: DateTime<Utc> },
    Finish { claim: Box<Claim>, outcome: Box<StepOutcome>, seal: Option<Arc<AuditKey>>, now: DateTime<Utc> },
    Retry { claim: Box<Claim>, at: DateTime<Utc>, error: String, now: DateTime<Utc> },
    Poll { claim: Box<Claim>, at: DateTime<Utc>, waiting_for: String, now: DateTime<Utc> },
}

/// What a write returns: whether a delivery was the first.
type Done = Option<bool>;
type Job = (Write, oneshot::Sender<Result<Done>>);

#[derive(Clone, Debug)]
pub(super) struct Batcher {
    queue: mpsc::Sender<Job>,
}

impl Batcher {
    /// Starts the writer; it ends when the last `Store` holding it is dropped.
    pub(super) fn start(pool: SqlitePool) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        tokio::spawn(writer(pool, jobs));
        Batcher { queue }
    }

    pub(super) async fn write(&self, w: Write) -> Result<Done> {
        let (reply, done) = oneshot::channel();
        self.queue.send((w, reply)).await.map_err(|_| gone())?;
        done.await.map_err(|_| gone())?
    }
}

fn gone() -> StoreError {
    StoreError::Database(sqlx::Error::PoolClosed)
}

async fn writer(pool: SqlitePool, mut jobs: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let writes: Vec<&Write> = batch.iter().map(|(w, _)| w).collect();
        let results = match together(&pool, &writes).await {
            Ok(done) => done.into_iter().map(Ok).collect(),
            // One write failed and took the transaction with it: each alone, so only its
            // own caller hears of it.
            Err(_) => {
                let mut each = Vec::with_capacity(writes.len());
                for w in &writes {
                    each.push(alone(&pool, w).await);
                }
                each
            }
        };
        for ((_, reply), r) in batch.drain(..).zip(results) {
            let _ = reply.send(r);
        }
    }
}

async fn together(pool: &SqlitePool, writes: &[&Write]) -> Result<Vec<Done>> {
    let mut tx = sqlite::begin_batch(pool).await?;
    let mut done = Vec::with_capacity(writes.len());
    for w in writes {
        done.push(apply(&mut tx, w).await?);
    }
    tx.commit().await?;
    Ok(done)
}

async fn alone(pool: &SqlitePool, w: &Write) -> Result<Done> {
    let mut tx = sqlite::begin_batch(pool).await?;
    let done = apply(&mut tx, w).await?;
    tx.commit().await?;
    Ok(done)
}

async fn apply(tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>, w: &Write) -> Result<Done> {
    match w {
        Write::Delivery { source, key, now, ttl } => sqlite::first_delivery_in(tx, source, key, *now, *ttl).await.map(Some),
        Write::SaveDraft { key, draft, expires } => sqlite::save_draft_in(tx, key, draft, *expires).await.map(|()| None),
        Write::DeleteDraft { key } => sqlite::delete_draft_in(tx, key).await.map(|()| None),
        Write::Refusal { audit, seal, event, now } => {
            sqlite::audit_only_in(tx, seal.as_deref(), audit, event.as_ref().map(|(r, k)| (r, k.clone())), *now).await.map(|()| None)
        }
        Write::Finish { claim, outcome, seal, now } => sqlite::finish_step_in(tx, seal.as_deref(), claim, outcome, *now).await.map(|()| None),
        Write::Retry { claim, at, error, now } => sqlite::retry_step_in(tx, claim, *at, error, *now).await.map(|()| None),
        Write::Poll { claim, at, waiting_for, now } => sqlite::poll_step_in(tx, claim, *at, waiting_for, *now).await.map(|()| None),
    }
}
