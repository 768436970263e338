use crate::NetError;
use crate::channel::Transport;
use std::sync::{Arc, Mutex};

/// Shared log of frames.
pub type FrameLog = Arc<Mutex<Vec<Vec<u8>>>>;

/// A transport wrapper that records a copy of every frame RECEIVED (what this party saw),
/// for tests such as "party 1 never sees a plaintext".
pub struct RecordingTransport<T> {
    inner: T,
    log: FrameLog,
}

impl<T: Transport> RecordingTransport<T> {
    /// Wraps `inner` with a fresh, empty log (get it with [`RecordingTransport::log`]).
    pub fn new(inner: T) -> Self {
        Self::with_log(inner, FrameLog::default())
    }

    /// Wraps `inner`, appending to an existing log (several channels may share one).
    pub fn with_log(inner: T, log: FrameLog) -> Self {
        Self { inner, log }
    }

    /// The shared log of received frames.
    pub fn log(&self) -> FrameLog {
        Arc::clone(&self.log)
    }
}

impl<T: Transport> Transport for RecordingTransport<T> {
    fn send_frame(&mut self, frame: Vec<u8>) -> Result<(), NetError> {
        self.inner.send_frame(frame)
    }

    fn recv_frame(&mut self) -> Result<Vec<u8>, NetError> {
        let frame = self.inner.recv_frame()?;
        // A poisoned lock only means another thread panicked while pushing; the Vec is intact.
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(frame.clone());
        Ok(frame)
    }

    fn peer(&self) -> &str {
        self.inner.peer()
    }

    fn in_process(&self) -> bool {
        self.inner.in_process()
    }
}
