//! A user-space link emulator: a [`Transport`] wrapper that adds one-way
//! delay and rate limiting, for measuring protocols "on a LAN" or "on a WAN"
//! inside one process (this machine's kernel has no netem).
//!
//! Model of the emulated network (the same one [`LinkProfile::modelled_seconds`]
//! assumes): every party has one uplink of `bits_per_second`, shared by all
//! its outgoing channels (a FIFO queue, like a NIC); a frame leaves when the
//! uplink has sent everything queued before it, and arrives `rtt / 2` later.
//! Sending never blocks (an unbounded socket buffer); the receiver waits until
//! the arrival time. Byte counts include the 4-byte frame header, as
//! [`crate::ChannelStats`] does. Downlinks are not limited.
//!
//! [`HopTransport`] measures the other half of the model on free (not
//! emulated) channels: clocks carried in every frame give the run's critical
//! path, its one-way message hops and the network time it would add on the
//! LAN and the WAN: `round trips x RTT + bytes / bandwidth` for the round
//! trips and bytes that must follow one another.
//!
//! Both ends of a channel must be wrapped (the sender stamps each frame with
//! its arrival time, the receiver strips the stamp), and both must live in one
//! process: stamps are [`Instant`]s. [`emulated_in_memory`] builds such a
//! network.
//!
//! ```
//! use ppml_net::emulator::{LinkProfile, emulated_in_memory};
//! use ppml_net::NetConfig;
//! use std::time::{Duration, Instant};
//!
//! let link = LinkProfile { rtt: Duration::from_millis(20), bits_per_second: 1e9 };
//! let mut nets = emulated_in_memory(2, &NetConfig::default(), link);
//! let mut b = nets.pop().unwrap();
//! let mut a = nets.pop().unwrap();
//! let t = Instant::now();
//! a.send(1, &7u32).unwrap();
//! let got: u32 = b.recv(0).unwrap();
//! assert_eq!(got, 7);
//! assert!(t.elapsed() >= Duration::from_millis(10)); // one-way delay: rtt / 2
//! ```

use crate::channel::Transport;
use crate::{FRAME_HEADER_BYTES, MemTransport, NetConfig, NetError, Network};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A network setting: round-trip time and per-party uplink bandwidth.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkProfile {
    /// Round-trip time (each frame is delayed by half of it).
    pub rtt: Duration,
    /// Uplink rate of every party, bits per second.
    pub bits_per_second: f64,
}

impl LinkProfile {
    /// A LAN: 1 Gbit/s, 0.2 ms RTT.
    pub const LAN: LinkProfile = LinkProfile {
        rtt: Duration::from_micros(200),
        bits_per_second: 1e9,
    };
    /// A WAN: 100 Mbit/s, 40 ms RTT.
    pub const WAN: LinkProfile = LinkProfile {
        rtt: Duration::from_millis(40),
        bits_per_second: 1e8,
    };

    /// Seconds to push `bytes` through one uplink.
    pub fn transfer_seconds(&self, bytes: u64) -> f64 {
        bytes as f64 * 8.0 / self.bits_per_second
    }

    /// The modelled wall time of a run on this network:
    /// `compute + rounds x RTT + bytes / bandwidth`, where `compute` is the
    /// run's time with free communication, `rounds` its round trips on the
    /// critical path (fractional: `hops / 2`, see [`HopTransport`]) and
    /// `bytes` the traffic of its busiest uplink.
    pub fn modelled_seconds(&self, compute_seconds: f64, rounds: f64, bytes: u64) -> f64 {
        compute_seconds + rounds * self.rtt.as_secs_f64() + self.transfer_seconds(bytes)
    }
}

/// Stamp length: arrival time in nanoseconds since [`epoch`].
const STAMP: usize = 8;

/// A process-wide origin for arrival stamps.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// One party's uplink: the time at which everything queued so far has left.
#[derive(Debug, Clone)]
pub struct Uplink {
    free_at: Arc<Mutex<Instant>>,
}

impl Default for Uplink {
    fn default() -> Self {
        Self {
            free_at: Arc::new(Mutex::new(Instant::now())),
        }
    }
}

impl Uplink {
    /// Queues `bytes` for sending now; returns when they will have left.
    fn enqueue(&self, bytes: u64, profile: &LinkProfile) -> Instant {
        let now = Instant::now();
        // A poisoned lock only means another sender panicked; the instant is intact.
        let mut free = self
            .free_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let start = (*free).max(now);
        let done = start + Duration::from_secs_f64(profile.transfer_seconds(bytes));
        *free = done;
        done
    }
}

/// A transport whose frames are delayed and rate limited as on `profile`
/// (see the module docs). The peer's end must be an `EmulatedTransport` too.
pub struct EmulatedTransport<T> {
    inner: T,
    profile: LinkProfile,
    uplink: Uplink,
}

impl<T: Transport> EmulatedTransport<T> {
    /// Wraps `inner`; `uplink` is the sending party's uplink (share one
    /// [`Uplink`] among all transports of a party).
    pub fn new(inner: T, profile: LinkProfile, uplink: Uplink) -> Self {
        Self {
            inner,
            profile,
            uplink,
        }
    }
}

impl<T: Transport> Transport for EmulatedTransport<T> {
    fn send_frame(&mut self, mut frame: Vec<u8>) -> Result<(), NetError> {
        let wire = (frame.len() + FRAME_HEADER_BYTES) as u64;
        let left = self.uplink.enqueue(wire, &self.profile);
        let arrive = left + self.profile.rtt / 2;
        // Saturates after 584 years of uptime.
        let stamp =
            u64::try_from(arrive.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX);
        frame.extend_from_slice(&stamp.to_le_bytes());
        self.inner.send_frame(frame)
    }

    fn recv_frame(&mut self) -> Result<Vec<u8>, NetError> {
        let mut frame = self.inner.recv_frame()?;
        let Some(at) = frame.len().checked_sub(STAMP) else {
            return Err(NetError::Decode(format!(
                "emulated frame of {} bytes from {} has no arrival stamp",
                frame.len(),
                self.inner.peer()
            )));
        };
        let mut stamp = [0u8; STAMP];
        stamp.copy_from_slice(&frame[at..]);
        frame.truncate(at);
        let arrive = epoch() + Duration::from_nanos(u64::from_le_bytes(stamp));
        let now = Instant::now();
        if arrive > now {
            std::thread::sleep(arrive - now);
        }
        Ok(frame)
    }

    fn peer(&self) -> &str {
        self.inner.peer()
    }
}

/// The settings [`CriticalPath`] models, in this order.
pub const MODELLED: [LinkProfile; 2] = [LinkProfile::LAN, LinkProfile::WAN];

/// One party's critical-path clocks (see [`HopTransport`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CriticalPath {
    /// Longest chain of one-way message hops ending at this party.
    pub hops: u64,
    /// For each of [`MODELLED`]: the network time, in seconds, at which this
    /// party last received something (its compute counted as zero).
    pub seconds: [f64; 2],
    /// For each of [`MODELLED`]: when this party's uplink is next free.
    uplink_free: [f64; 2],
}

/// A party's [`CriticalPath`], shared by all its transports.
pub type HopClock = Arc<Mutex<CriticalPath>>;

/// Stamp of a [`HopTransport`] frame: hops, then the arrival time on each
/// modelled link (f64 seconds).
const HOP_STAMP: usize = 8 + 8 * MODELLED.len();

/// A transport that carries Lamport-style clocks of the network alone: the
/// number of one-way hops, and for the LAN and the WAN of [`MODELLED`] the
/// time a frame would arrive if computing took no time (it leaves when the
/// sender's uplink is free, after everything the sender received, takes
/// `bytes / bandwidth` on the uplink and `RTT / 2` in flight). At the end of
/// a run the largest clocks are the critical path: the hops (a chain of
/// messages each sent after the previous arrived) and the network time
/// (round trips x RTT plus the bytes that had to cross uplinks one after
/// the other / bandwidth) that a real network adds to the compute time.
/// Share one [`HopClock`] among all transports of a party; wrap both ends.
pub struct HopTransport<T> {
    inner: T,
    clock: HopClock,
}

impl<T: Transport> HopTransport<T> {
    /// Wraps `inner`, ticking `clock` (this party's).
    pub fn new(inner: T, clock: HopClock) -> Self {
        Self { inner, clock }
    }
}

fn lock(clock: &HopClock) -> std::sync::MutexGuard<'_, CriticalPath> {
    // A poisoned lock only means another thread of this party panicked; the
    // clock values are still consistent numbers.
    clock
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<T: Transport> Transport for HopTransport<T> {
    fn send_frame(&mut self, mut frame: Vec<u8>) -> Result<(), NetError> {
        let wire = (frame.len() + FRAME_HEADER_BYTES) as u64;
        let mut stamp = [0u8; HOP_STAMP];
        {
            let mut c = lock(&self.clock);
            stamp[..8].copy_from_slice(&c.hops.saturating_add(1).to_le_bytes());
            for (i, link) in MODELLED.iter().enumerate() {
                let left = c.uplink_free[i].max(c.seconds[i]) + link.transfer_seconds(wire);
                c.uplink_free[i] = left;
                let arrive = left + link.rtt.as_secs_f64() / 2.0;
                stamp[8 + 8 * i..16 + 8 * i].copy_from_slice(&arrive.to_le_bytes());
            }
        }
        frame.extend_from_slice(&stamp);
        self.inner.send_frame(frame)
    }

    fn recv_frame(&mut self) -> Result<Vec<u8>, NetError> {
        let mut frame = self.inner.recv_frame()?;
        let Some(at) = frame.len().checked_sub(HOP_STAMP) else {
            return Err(NetError::Decode(format!(
                "frame of {} bytes from {} has no hop stamp",
                frame.len(),
                self.inner.peer()
            )));
        };
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&frame[at + 8 * i..at + 8 * i + 8]);
            w
        };
        let hops = u64::from_le_bytes(word(0));
        let arrive: Vec<f64> = (0..MODELLED.len())
            .map(|i| f64::from_le_bytes(word(i + 1)))
            .collect();
        {
            let mut c = lock(&self.clock);
            c.hops = c.hops.max(hops);
            for (t, a) in c.seconds.iter_mut().zip(&arrive) {
                // NaN (a hostile stamp) never wins a max.
                *t = t.max(*a);
            }
        }
        frame.truncate(at);
        Ok(frame)
    }

    fn peer(&self) -> &str {
        self.inner.peer()
    }
}

/// The critical path of a whole run: the largest clocks over all parties.
pub fn critical_path(clocks: &[HopClock]) -> CriticalPath {
    let mut out = CriticalPath::default();
    for c in clocks {
        let c = lock(c);
        out.hops = out.hops.max(c.hops);
        for i in 0..MODELLED.len() {
            out.seconds[i] = out.seconds[i].max(c.seconds[i]);
        }
    }
    out
}

/// `n` in-process parties over in-memory channels that count critical-path
/// hops, optionally through the link emulator; returns the networks and each
/// party's [`HopClock`].
pub fn in_memory_with_hops(
    n: usize,
    config: &NetConfig,
    emulate: Option<LinkProfile>,
) -> (Vec<Network>, Vec<HopClock>) {
    let clocks: Vec<HopClock> = (0..n).map(|_| HopClock::default()).collect();
    let uplinks: Vec<Uplink> = (0..n).map(|_| Uplink::default()).collect();
    let nets = Network::in_memory_with(n, config, |me, _peer, t: MemTransport| {
        let hops = HopTransport::new(t, Arc::clone(&clocks[me]));
        match emulate {
            Some(profile) => Box::new(EmulatedTransport::new(hops, profile, uplinks[me].clone())),
            None => Box::new(hops),
        }
    });
    (nets, clocks)
}

/// `n` in-process parties (as [`Network::in_memory`]) whose every channel
/// runs through the emulator with `profile`, one uplink per party.
pub fn emulated_in_memory(n: usize, config: &NetConfig, profile: LinkProfile) -> Vec<Network> {
    let uplinks: Vec<Uplink> = (0..n).map(|_| Uplink::default()).collect();
    Network::in_memory_with(n, config, |me, _peer, t: MemTransport| {
        Box::new(EmulatedTransport::new(t, profile, uplinks[me].clone()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_adds_the_three_terms() {
        let wan = LinkProfile::WAN;
        // 10 rounds x 40 ms + 1.25 MB at 100 Mbit/s (0.1 s) + 0.5 s compute.
        let s = wan.modelled_seconds(0.5, 10.0, 1_250_000);
        assert!((s - 1.0).abs() < 1e-9, "{s}");
        assert!((LinkProfile::LAN.transfer_seconds(125_000_000) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn delay_and_rate_are_applied() {
        // 10 Mbit/s, 20 ms RTT: a 250 kB frame takes 0.2 s to leave, +10 ms.
        let link = LinkProfile {
            rtt: Duration::from_millis(20),
            bits_per_second: 1e7,
        };
        let mut nets = emulated_in_memory(2, &NetConfig::default(), link);
        let mut b = nets.pop().expect("two parties");
        let mut a = nets.pop().expect("two parties");
        let t = Instant::now();
        a.send_bytes(1, vec![1u8; 250_000 - FRAME_HEADER_BYTES])
            .expect("send");
        let sent = t.elapsed();
        let got = b.recv_bytes(0).expect("recv");
        let el = t.elapsed().as_secs_f64();
        assert_eq!(got.len(), 250_000 - FRAME_HEADER_BYTES);
        assert!(got.iter().all(|&x| x == 1));
        assert!(sent < Duration::from_millis(50), "sending does not block");
        assert!((0.209..0.3).contains(&el), "{el}");
        // Two frames back to back share the uplink: the second waits.
        let t = Instant::now();
        for _ in 0..2 {
            a.send_bytes(1, vec![0u8; 50_000 - FRAME_HEADER_BYTES])
                .expect("send");
        }
        b.recv_bytes(0).expect("recv");
        let first = t.elapsed().as_secs_f64();
        b.recv_bytes(0).expect("recv");
        let second = t.elapsed().as_secs_f64();
        assert!((0.049..0.09).contains(&first), "{first}");
        assert!((0.089..0.13).contains(&second), "{second}");
        // Stats count the payload and the frame header, not the stamp.
        assert_eq!(a.stats().total.bytes_sent, 350_000);
    }

    #[test]
    fn hops_follow_the_longest_chain() {
        let (mut nets, clocks) = in_memory_with_hops(3, &NetConfig::default(), None);
        let mut c = nets.pop().expect("3");
        let mut b = nets.pop().expect("3");
        let mut a = nets.pop().expect("3");
        // a -> b and a -> c in parallel (1 hop), then b -> c (2 hops), then c -> a (3).
        a.send(1, &1u8).expect("send");
        a.send(2, &2u8).expect("send");
        let _: u8 = b.recv(0).expect("recv");
        b.send(2, &3u8).expect("send");
        let _: u8 = c.recv(0).expect("recv");
        let _: u8 = c.recv(1).expect("recv");
        c.send(0, &4u8).expect("send");
        let got: u8 = a.recv(2).expect("recv");
        assert_eq!(got, 4);
        let d: Vec<u64> = clocks.iter().map(|c| lock(c).hops).collect();
        assert_eq!(d, vec![3, 1, 2]);
        // Network time on the WAN: three hops of 20 ms plus each frame's
        // 5 bytes (1-byte postcard payload + header) on an uplink; a's two
        // frames share its uplink, so c's first frame leaves 0.4 us late.
        let wan = LinkProfile::WAN;
        let f = wan.transfer_seconds(5);
        let want = 3.0 * 0.020 + 3.0 * f;
        assert!((lock(&clocks[0]).seconds[1] - want).abs() < 1e-9);
        assert!((lock(&clocks[2]).seconds[1] - (2.0 * 0.020 + 2.0 * f)).abs() < 1e-9);
        // Two messages back to back are one hop, not two.
        b.send(0, &5u8).expect("send");
        b.send(0, &6u8).expect("send");
        let _: u8 = a.recv(1).expect("recv");
        let _: u8 = a.recv(1).expect("recv");
        assert_eq!(lock(&clocks[0]).hops, 3);
        let cp = critical_path(&clocks);
        assert_eq!(cp.hops, 3);
        assert!((cp.seconds[1] - want).abs() < 1e-9);
        assert!(cp.seconds[0] < cp.seconds[1]);
    }

    #[test]
    fn a_frame_without_stamp_is_an_error() {
        let (x, y) = crate::in_memory_transport_pair(&NetConfig::default());
        let mut raw = x;
        let mut emu = EmulatedTransport::new(y, LinkProfile::LAN, Uplink::default());
        raw.send_frame(vec![1, 2, 3]).expect("send");
        assert!(matches!(emu.recv_frame(), Err(NetError::Decode(_))));
    }
}
