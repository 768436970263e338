use serde::{Deserialize, Serialize};
use std::ops::{Add, AddAssign, Sub};

/// Traffic counters of a channel (or, summed, of a party).
///
/// Bytes count the payload plus the 4-byte length header of every frame, identically for
/// the in-memory and the TCP transport, so figures do not depend on the transport.
/// A round starts each time the party sends after having received (or on its first send).
///
/// To measure one protocol: `let before = ch.stats(); run(&mut ch)?; let cost = ch.stats() - before;`
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStats {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub messages_sent: u64,
    pub messages_received: u64,
    pub rounds: u64,
}

impl ChannelStats {
    /// Bytes sent plus bytes received.
    pub fn total_bytes(&self) -> u64 {
        self.bytes_sent.wrapping_add(self.bytes_received)
    }
}

impl Add for ChannelStats {
    type Output = ChannelStats;
    fn add(self, o: ChannelStats) -> ChannelStats {
        ChannelStats {
            bytes_sent: self.bytes_sent.wrapping_add(o.bytes_sent),
            bytes_received: self.bytes_received.wrapping_add(o.bytes_received),
            messages_sent: self.messages_sent.wrapping_add(o.messages_sent),
            messages_received: self.messages_received.wrapping_add(o.messages_received),
            rounds: self.rounds.wrapping_add(o.rounds),
        }
    }
}

impl AddAssign for ChannelStats {
    fn add_assign(&mut self, o: ChannelStats) {
        *self = *self + o;
    }
}

/// Saturating difference (counters only grow, so `after - before` is exact).
impl Sub for ChannelStats {
    type Output = ChannelStats;
    fn sub(self, o: ChannelStats) -> ChannelStats {
        ChannelStats {
            bytes_sent: self.bytes_sent.saturating_sub(o.bytes_sent),
            bytes_received: self.bytes_received.saturating_sub(o.bytes_received),
            messages_sent: self.messages_sent.saturating_sub(o.messages_sent),
            messages_received: self.messages_received.saturating_sub(o.messages_received),
            rounds: self.rounds.saturating_sub(o.rounds),
        }
    }
}

impl std::iter::Sum for ChannelStats {
    fn sum<I: Iterator<Item = ChannelStats>>(iter: I) -> ChannelStats {
        iter.fold(ChannelStats::default(), Add::add)
    }
}
