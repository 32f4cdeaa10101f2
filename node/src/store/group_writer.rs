//! Writes that many tasks make at once, committed in groups by one thread.
//!
//! redb has one writer at a time, and each commit costs its own flush (and, when durable, its
//! own fsync). A task that wrote for itself waited on a runtime worker for every writer before
//! it, and paid a commit and its table opens alone. Here one thread takes every item waiting
//! when it is free and writes them with one call of its `write` (one transaction); each task is
//! answered once that call returned, so nothing is answered before it is committed. A group's
//! error is every item's error.
//!
//! Hand-written: a channel, a thread and a closure; no crate offers group commit for redb.

use super::StoreError;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

type Reply<R> = oneshot::Sender<Result<R, Arc<StoreError>>>;

/// The sending side of a group writer; cheap to clone. The thread ends when every clone is
/// dropped.
#[derive(Debug)]
pub(crate) struct GroupWriter<T, R> {
    queue: mpsc::Sender<(T, Reply<R>)>,
}

impl<T, R> Clone for GroupWriter<T, R> {
    fn clone(&self) -> Self {
        Self { queue: self.queue.clone() }
    }
}

impl<T: Send + 'static, R: Send + 'static> GroupWriter<T, R> {
    /// Starts thread `name`, which writes at most `max_group` items per call of `write`; at most
    /// `waiting` items wait for it before a submit waits for room. `write` answers one result
    /// per item, in order.
    pub(crate) fn spawn(
        name: &str,
        max_group: usize,
        waiting: usize,
        write: impl Fn(&[T]) -> Result<Vec<R>, StoreError> + Send + 'static,
    ) -> std::io::Result<Self> {
        let (queue, mut rx) = mpsc::channel::<(T, Reply<R>)>(waiting.max(1));
        let max_group = max_group.max(1);
        std::thread::Builder::new().name(name.into()).spawn(move || {
            while let Some(first) = rx.blocking_recv() {
                let mut group = vec![first];
                while group.len() < max_group {
                    match rx.try_recv() {
                        Ok(next) => group.push(next),
                        Err(_) => break,
                    }
                }
                let (items, replies): (Vec<T>, Vec<Reply<R>>) = group.into_iter().unzip();
                // A panic in the write fails its group, not the writer: the next items are
                // written as before.
                let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write(&items)))
                    .unwrap_or_else(|_| Err(StoreError::GroupWrite { reason: "the write panicked".into() }));
                match written {
                    Ok(results) if results.len() == replies.len() => {
                        for (reply, r) in replies.into_iter().zip(results) {
                            let _ = reply.send(Ok(r));
                        }
                    }
                    Ok(results) => {
                        let e = Arc::new(StoreError::GroupWrite {
                            reason: format!("{} results for {} items", results.len(), replies.len()),
                        });
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                    Err(e) => {
                        let e = Arc::new(e);
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        })?;
        Ok(Self { queue })
    }

    /// Writes `item` with the next group; answers once that group's write returned.
    pub(crate) async fn submit(&self, item: T) -> Result<R, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((item, reply)).await.map_err(|_| StoreError::WriterStopped)?;
        match answer.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(StoreError::GroupWrite { reason: e.to_string() }),
            Err(_) => Err(StoreError::WriterStopped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Items submitted together are each answered with their own result, in groups no larger
    /// than the bound; a failed group fails each of its items, and the writer goes on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn items_submitted_together_are_grouped_and_each_answered() {
        let groups = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = groups.clone();
        let writer = GroupWriter::spawn("test-writer", 8, 64, move |items: &[u32]| {
            seen.lock().expect("lock").push(items.len());
            if items.contains(&13) {
                return Err(StoreError::GroupWrite { reason: "unlucky".into() });
            }
            Ok(items.iter().map(|i| i * 2).collect())
        })
        .expect("thread");
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..100u32 {
            let w = writer.clone();
            tasks.spawn(async move { (i, w.submit(i).await) });
        }
        let mut failed = 0;
        while let Some(r) = tasks.join_next().await {
            match r.expect("task") {
                (i, Ok(doubled)) => assert_eq!(doubled, i * 2),
                (_, Err(StoreError::GroupWrite { .. })) => failed += 1,
                (i, Err(e)) => panic!("item {i}: {e}"),
            }
        }
        let groups = groups.lock().expect("lock").clone();
        assert_eq!(groups.iter().sum::<usize>(), 100, "every item written once");
        assert!(groups.iter().all(|g| (1..=8).contains(g)), "groups within the bound: {groups:?}");
        assert!((1..=8).contains(&failed), "only the group of 13 failed ({failed})");
        assert_eq!(writer.submit(5).await.expect("after a failed group"), 10);
    }

    /// A writer whose thread is gone says so instead of hanging.
    #[tokio::test]
    async fn a_stopped_writer_is_an_error() {
        let (queue, rx) = mpsc::channel::<(u32, Reply<u32>)>(1);
        drop(rx);
        let writer = GroupWriter { queue };
        assert!(matches!(writer.submit(1).await, Err(StoreError::WriterStopped)));
    }
}
