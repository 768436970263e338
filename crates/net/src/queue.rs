//! A byte-bounded frame queue between a connection's reader thread and its
//! [`crate::Channel`].
//!
//! Why bytes, not frames: protocols pipeline (the SMPC data owner sends every
//! batch before it reads a prediction), so a bound of a few frames would
//! deadlock two parties that both wait for the other to read; a bound in
//! bytes keeps memory bounded against a flooding peer while letting many
//! small frames through. When the queue is full the reader thread stops
//! reading the socket, so TCP flow control pushes back on the sender.
//!
//! A frame larger than the budget is admitted only into an empty queue, so
//! memory held by one link is at most `max(budget, max_frame)` plus the frame
//! being read.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

struct State<T> {
    items: VecDeque<(T, usize)>,
    bytes: usize,
    /// The receiving side was dropped: the reader thread must stop.
    receiver_gone: bool,
    /// The sending side was dropped: no more items after those queued.
    sender_gone: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Signalled when an item is pushed or the sender goes away.
    not_empty: Condvar,
    /// Signalled when an item is popped or the receiver goes away.
    not_full: Condvar,
    budget: usize,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A poisoned lock means a thread panicked while holding it; the queue's
        // state is still consistent (every update is a single push/pop), so go on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The reader thread's end.
pub(crate) struct QueueSender<T> {
    shared: Arc<Shared<T>>,
}

/// The channel's end.
pub(crate) struct QueueReceiver<T> {
    shared: Arc<Shared<T>>,
}

/// Why a timed receive returned nothing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RecvError {
    Timeout,
    Disconnected,
}

/// A queue holding at most `budget` bytes (see the module docs).
pub(crate) fn bounded<T>(budget: usize) -> (QueueSender<T>, QueueReceiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            bytes: 0,
            receiver_gone: false,
            sender_gone: false,
        }),
        not_empty: Condvar::new(),
        not_full: Condvar::new(),
        budget,
    });
    (
        QueueSender {
            shared: Arc::clone(&shared),
        },
        QueueReceiver { shared },
    )
}

impl<T> QueueSender<T> {
    /// Blocks until `item` (of `bytes` bytes) fits, then queues it. Returns
    /// `false` if the receiver was dropped (the item is discarded).
    pub(crate) fn send(&self, item: T, bytes: usize) -> bool {
        let mut st = self.shared.lock();
        loop {
            if st.receiver_gone {
                return false;
            }
            let fits = st.items.is_empty()
                || st
                    .bytes
                    .checked_add(bytes)
                    .is_some_and(|b| b <= self.shared.budget);
            if fits {
                break;
            }
            st = self
                .shared
                .not_full
                .wait(st)
                .unwrap_or_else(|p| p.into_inner());
        }
        st.bytes += bytes;
        st.items.push_back((item, bytes));
        drop(st);
        self.shared.not_empty.notify_one();
        true
    }
}

impl<T> Drop for QueueSender<T> {
    fn drop(&mut self) {
        self.shared.lock().sender_gone = true;
        self.shared.not_empty.notify_all();
    }
}

impl<T> QueueReceiver<T> {
    /// Waits at most `timeout` for the next item.
    pub(crate) fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvError> {
        let deadline = Instant::now().checked_add(timeout);
        let mut st = self.shared.lock();
        loop {
            if let Some((item, bytes)) = st.items.pop_front() {
                st.bytes -= bytes;
                drop(st);
                self.shared.not_full.notify_one();
                return Ok(item);
            }
            if st.sender_gone {
                return Err(RecvError::Disconnected);
            }
            let now = Instant::now();
            let wait = match deadline {
                Some(d) if now >= d => return Err(RecvError::Timeout),
                Some(d) => d - now,
                // A timeout too large to represent as an instant: wait in long steps.
                None => Duration::from_secs(3600),
            };
            st = self
                .shared
                .not_empty
                .wait_timeout(st, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Bytes currently queued (for tests of the bound).
    #[cfg(test)]
    pub(crate) fn queued_bytes(&self) -> usize {
        self.shared.lock().bytes
    }
}

impl<T> QueueReceiver<T> {
    /// Stops receiving: queued items are dropped and a blocked sender returns `false`.
    pub(crate) fn close(&self) {
        let mut st = self.shared.lock();
        st.receiver_gone = true;
        st.items.clear();
        st.bytes = 0;
        drop(st);
        self.shared.not_full.notify_all();
    }
}

impl<T> Drop for QueueReceiver<T> {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_blocks_at_the_budget_until_the_receiver_pops() {
        let (tx, rx) = bounded::<Vec<u8>>(100);
        let t = std::thread::spawn(move || {
            for i in 0..10u8 {
                assert!(tx.send(vec![i; 40], 40));
            }
        });
        std::thread::sleep(Duration::from_millis(100));
        // Two 40-byte frames fit in 100 bytes; the third waits.
        assert_eq!(rx.queued_bytes(), 80);
        for i in 0..10u8 {
            assert_eq!(
                rx.recv_timeout(Duration::from_secs(5)).unwrap(),
                vec![i; 40]
            );
            assert!(rx.queued_bytes() <= 100);
        }
        t.join().unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(10)),
            Err(RecvError::Disconnected)
        );
    }

    #[test]
    fn an_oversized_item_passes_an_empty_queue_only() {
        let (tx, rx) = bounded::<u32>(10);
        assert!(tx.send(1, 5));
        let t = std::thread::spawn(move || tx.send(2, 50));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(rx.queued_bytes(), 5);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 1);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 2);
        assert!(t.join().unwrap());
    }

    #[test]
    fn dropping_the_receiver_unblocks_the_sender() {
        let (tx, rx) = bounded::<u32>(10);
        assert!(tx.send(1, 10));
        let t = std::thread::spawn(move || tx.send(2, 10));
        std::thread::sleep(Duration::from_millis(50));
        drop(rx);
        assert!(!t.join().unwrap());
    }

    #[test]
    fn timeout_when_nothing_arrives() {
        let (_tx, rx) = bounded::<u32>(10);
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(20)),
            Err(RecvError::Timeout)
        );
    }
}
