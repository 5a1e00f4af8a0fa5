//! The writer pool: threads that compress and write the contents the parser hashed in memory,
//! handed over in batches, so parsing never waits on a write.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use layerstore_store::{NewObject, ObjectId, PutOutcome, Staging};

use super::LayerStats;
use crate::error::{Error, Result};

/// Threads per layer that write (and compress) in-memory contents.
const WRITERS: usize = 2;
/// Batches queued for the writers at most.
const WRITE_QUEUE: usize = 2;
/// Contents go to the writers in batches of about this many bytes, or [`BATCH_LEN`] contents,
/// so that small files do not cost a thread wake-up each. A batch holds at most
/// `max(BATCH_BYTES, entries::IN_MEMORY_MAX)` bytes.
const BATCH_BYTES: usize = 1 << 20;
const BATCH_LEN: usize = 64;

pub(super) type Written = (NewObject, PutOutcome);
type Batch = Vec<(ObjectId, Vec<u8>)>;

/// Writer threads for contents already hashed in memory, for which
/// [`Staging::put_found_or_inline`] found nothing cheap to do.
pub(super) struct WritePool<'scope> {
    tx: Option<mpsc::SyncSender<Batch>>,
    batch: Batch,
    batch_bytes: usize,
    workers: Vec<std::thread::ScopedJoinHandle<'scope, Result<Vec<Written>>>>,
    failed: Arc<AtomicBool>,
}

impl<'scope> WritePool<'scope> {
    pub(super) fn start<'env>(
        s: &'scope std::thread::Scope<'scope, 'env>,
        staging: &'scope Staging<'_>,
    ) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Batch>(WRITE_QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let failed = Arc::new(AtomicBool::new(false));
        let workers = (0..WRITERS)
            .map(|_| {
                let rx = Arc::clone(&rx);
                let failed = Arc::clone(&failed);
                s.spawn(move || {
                    let mut done = Vec::new();
                    loop {
                        let job = rx.lock().map_err(|_| writer_stopped())?.recv();
                        let Ok(batch) = job else {
                            return Ok(done);
                        };
                        for (id, data) in batch {
                            match staging.put_by_writing(id, &data) {
                                Ok(w) => done.push(w),
                                Err(e) => {
                                    failed.store(true, Ordering::Relaxed);
                                    return Err(Error::Store(e));
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        WritePool {
            tx: Some(tx),
            batch: Vec::new(),
            batch_bytes: 0,
            workers,
            failed,
        }
    }

    /// Queue a content for writing; fails once a writer has failed.
    pub(super) fn submit(&mut self, id: ObjectId, data: Vec<u8>) -> Result<()> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(writer_stopped());
        }
        if self.batch_bytes + data.len() > BATCH_BYTES {
            self.send_batch()?;
        }
        self.batch_bytes += data.len();
        self.batch.push((id, data));
        if self.batch.len() >= BATCH_LEN {
            self.send_batch()?;
        }
        Ok(())
    }

    fn send_batch(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.batch_bytes = 0;
        let tx = self.tx.as_ref().expect("open until finish");
        tx.send(std::mem::take(&mut self.batch))
            .map_err(|_| writer_stopped())
    }

    /// Wait for every queued write (after sending the last batch if `complete`); the first
    /// writer error, if any.
    pub(super) fn finish(mut self, complete: bool) -> Result<Vec<Written>> {
        let last = if complete { self.send_batch() } else { Ok(()) };
        drop(self.tx.take());
        let mut all = Vec::new();
        let mut first_err = None;
        for w in self.workers.drain(..) {
            match w.join() {
                Ok(Ok(done)) => all.extend(done),
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        first_err.map_or(last.map(|()| all), Err)
    }
}

fn writer_stopped() -> Error {
    Error::WritersStopped
}

/// Add what was written to the layer's objects and counters.
pub(super) fn count_written(
    stats: &mut LayerStats,
    objects: &mut HashMap<ObjectId, NewObject>,
    w: Written,
) {
    let (obj, outcome) = w;
    match outcome {
        PutOutcome::Inline => stats.inline_objects += 1,
        PutOutcome::Written => {
            stats.new_objects += 1;
            stats.new_bytes += obj.size;
        }
        PutOutcome::Deduplicated => stats.dedup_hits += 1,
    }
    objects.entry(obj.id).or_insert(obj);
}
