//! A task supervisor's inbox: an unbounded queue from the engine to one
//! supervisor, closed when the engine drops its end. tokio's mpsc channel
//! would do, but it allocates a 32-message block and cache-padded state up
//! front, about 1 KiB per task, and one simulator process runs 100,000
//! tasks; this costs about a hundred bytes until messages arrive.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::lock;

#[derive(Default)]
struct Queue<T> {
    messages: VecDeque<T>,
    /// The sender is gone: once `messages` is empty, nothing more comes.
    closed: bool,
}

struct Shared<T> {
    queue: Mutex<Queue<T>>,
    /// One permit per wake-up: a message or the close arrived.
    arrived: Notify,
}

/// The engine's end. Dropping it closes the inbox.
pub(crate) struct Sender<T>(Arc<Shared<T>>);

/// The supervisor's end.
pub(crate) struct Receiver<T>(Arc<Shared<T>>);

pub(crate) fn inbox<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            messages: VecDeque::new(),
            closed: false,
        }),
        arrived: Notify::new(),
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl<T> Sender<T> {
    /// Queues `message` behind the earlier ones; dropped when the
    /// supervisor has ended.
    pub(crate) fn send(&self, message: T) {
        if Arc::strong_count(&self.0) == 1 {
            return;
        }
        lock(&self.0.queue).messages.push_back(message);
        self.0.arrived.notify_one();
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        lock(&self.0.queue).closed = true;
        self.0.arrived.notify_one();
    }
}

impl<T> Receiver<T> {
    /// The next message; `None` once the sender is gone and every message
    /// has been taken. Cancel safe: a message is only taken when returned.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        loop {
            {
                let mut queue = lock(&self.0.queue);
                if let Some(message) = queue.messages.pop_front() {
                    return Some(message);
                }
                if queue.closed {
                    return None;
                }
            }
            // `notify_one` keeps a permit when nobody waits, so an arrival
            // between the check above and this wait is not missed.
            self.0.arrived.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn messages_arrive_in_order_then_the_inbox_closes() {
        let (tx, mut rx) = inbox();
        tx.send(1);
        tx.send(2);
        let waiting = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(message) = rx.recv().await {
                got.push(message);
            }
            got
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        tx.send(3);
        drop(tx);
        assert_eq!(waiting.await.unwrap(), vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn a_cancelled_receive_loses_nothing() {
        let (tx, mut rx) = inbox();
        let timed_out = tokio::time::timeout(Duration::from_millis(10), rx.recv()).await;
        assert!(timed_out.is_err());
        tx.send("late");
        assert_eq!(rx.recv().await, Some("late"));
    }

    #[test]
    fn sending_to_an_ended_supervisor_keeps_nothing() {
        let (tx, rx) = inbox();
        drop(rx);
        tx.send(1);
        assert!(lock(&tx.0.queue).messages.is_empty());
    }
}
