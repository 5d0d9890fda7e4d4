//! What a node lets its callers hold: connections, streams, bytes being read, time to send.
//!
//! A caller without a certificate can open connections and streams and send slowly; these bounds
//! keep what that costs the node fixed, whoever calls: at most `connections` connections (and
//! `connections_per_address` from one IP address; more are refused at the handshake), at most
//! `streams_per_connection` request streams open on each and `receive_window` bytes in flight
//! towards each (QUIC flow control holds the caller back), at most `buffered_bytes` of requests
//! held at once over all streams and `buffered_bytes_per_address` from one IP address (a stream
//! takes room before it reads more, and keeps it until its answer is written, so one flooding
//! address leaves room for others), and `read_deadline` to send a whole request (then the stream
//! is stopped and its room freed). So requests never hold more than
//! `connections × receive_window + buffered_bytes` bytes ([`Bounds::memory`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The bounds; [`Bounds::default`] gives the defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Connections open at once, in all (default 1,024).
    pub connections: usize,
    /// Connections open at once from one IP address (default 256).
    pub connections_per_address: usize,
    /// Request streams one connection may have open at once (default 256).
    pub streams_per_connection: u32,
    /// Bytes of requests held at once over all streams (default 256 MiB; at least one frame).
    pub buffered_bytes: usize,
    /// Bytes of requests held at once over the streams from one IP address (default 64 MiB; at
    /// least one frame).
    pub buffered_bytes_per_address: usize,
    /// How long a caller has to send a whole request (default 10 s).
    pub read_deadline: Duration,
    /// Bytes a caller may have in flight towards the node on one connection, over all its
    /// streams (QUIC connection receive window; default 2 MiB).
    pub receive_window: u32,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            connections: 1024,
            connections_per_address: 256,
            streams_per_connection: 256,
            buffered_bytes: 256 * 1024 * 1024,
            buffered_bytes_per_address: 64 * 1024 * 1024,
            read_deadline: Duration::from_secs(10),
            receive_window: 2 * 1024 * 1024,
        }
    }
}

/// Why bounds are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BoundsError {
    /// The byte budget cannot hold one largest request.
    #[error("buffered_bytes {budget} cannot hold one request of the frame limit ({frame} bytes)")]
    BudgetUnderFrame {
        /// The budget.
        budget: usize,
        /// The frame limit.
        frame: usize,
    },
    /// A count is zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
}

impl Bounds {
    /// The most bytes requests can hold in a node: `connections × receive_window +
    /// buffered_bytes` (with the defaults, 2.25 GiB; the answers being written come on top).
    pub fn memory(&self) -> usize {
        self.connections.saturating_mul(self.receive_window as usize).saturating_add(self.buffered_bytes)
    }

    /// Checks the bounds against the frame limit.
    pub fn validate(&self, max_frame: usize) -> Result<(), BoundsError> {
        if self.connections == 0 {
            return Err(BoundsError::Zero("connections"));
        }
        if self.connections_per_address == 0 {
            return Err(BoundsError::Zero("connections_per_address"));
        }
        if self.streams_per_connection == 0 {
            return Err(BoundsError::Zero("streams_per_connection"));
        }
        if self.receive_window == 0 {
            return Err(BoundsError::Zero("receive_window"));
        }
        for budget in [self.buffered_bytes, self.buffered_bytes_per_address] {
            if budget < max_frame || budget > Semaphore::MAX_PERMITS {
                return Err(BoundsError::BudgetUnderFrame { budget, frame: max_frame });
            }
        }
        Ok(())
    }
}

/// The connections and bytes held now, shared by the endpoint's tasks.
#[derive(Debug)]
pub(crate) struct Held {
    bounds: Bounds,
    connections: Mutex<(usize, HashMap<IpAddr, Address>)>,
    bytes: Arc<Semaphore>,
}

/// What one IP address holds: its connections, and its byte budget.
type Address = (usize, Arc<Semaphore>);

/// One admitted connection; counted until dropped.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    held: Arc<Held>,
    address: IpAddr,
    /// The byte budget of the connection's address.
    bytes: Arc<Semaphore>,
}

/// Room held in the byte budgets, the address's and the node's.
#[derive(Debug)]
pub(crate) struct Room {
    _address: OwnedSemaphorePermit,
    _node: OwnedSemaphorePermit,
}

impl Held {
    pub(crate) fn new(bounds: Bounds) -> Arc<Held> {
        Arc::new(Held {
            bounds,
            connections: Mutex::new((0, HashMap::new())),
            bytes: Arc::new(Semaphore::new(bounds.buffered_bytes)),
        })
    }

    pub(crate) fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    /// Admits a connection from `address`, or `None` when a bound is reached.
    pub(crate) fn admit(self: &Arc<Self>, address: IpAddr) -> Option<ConnectionSlot> {
        let mut guard = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let (total, by_address) = &mut *guard;
        let per_address = self.bounds.buffered_bytes_per_address;
        let (from_here, bytes) =
            by_address.entry(address).or_insert_with(|| (0, Arc::new(Semaphore::new(per_address))));
        if *total >= self.bounds.connections || *from_here >= self.bounds.connections_per_address {
            return None;
        }
        *from_here += 1;
        *total += 1;
        Some(ConnectionSlot { held: self.clone(), address, bytes: bytes.clone() })
    }

    /// Room for `len` more bytes of a request from the connection of `slot` (waits until its
    /// address's budget and the node's both have some).
    pub(crate) async fn room(&self, slot: &ConnectionSlot, len: usize) -> Option<Room> {
        let len = u32::try_from(len).ok()?;
        let address = slot.bytes.clone().acquire_many_owned(len).await.ok()?;
        let node = self.bytes.clone().acquire_many_owned(len).await.ok()?;
        Some(Room { _address: address, _node: node })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut guard = self.held.connections.lock().unwrap_or_else(|p| p.into_inner());
        let (total, by_address) = &mut *guard;
        *total = total.saturating_sub(1);
        if let Some((n, _)) = by_address.get_mut(&self.address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                by_address.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_in_all_and_per_address_and_freed_when_dropped() {
        let bounds = Bounds { connections: 3, connections_per_address: 2, ..Bounds::default() };
        let held = Held::new(bounds);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = held.admit(a).unwrap();
        let _second = held.admit(a).unwrap();
        assert!(held.admit(a).is_none(), "two from one address");
        let _third = held.admit(b).unwrap();
        assert!(held.admit(b).is_none(), "three in all");
        drop(first);
        assert!(held.admit(a).is_some(), "a closed connection frees its slot");
    }

    #[tokio::test]
    async fn requests_wait_for_room_in_the_byte_budgets() {
        let held = Held::new(Bounds { buffered_bytes: 10, buffered_bytes_per_address: 7, ..Bounds::default() });
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let (from_a, from_b) = (held.admit(a).unwrap(), held.admit(b).unwrap());
        let first = held.room(&from_a, 6).await.unwrap();
        let wait = Duration::from_millis(50);
        assert!(tokio::time::timeout(wait, held.room(&from_a, 2)).await.is_err(), "8 bytes from a, its budget is 7");
        let second = held.room(&from_b, 4).await.unwrap();
        assert!(tokio::time::timeout(wait, held.room(&from_b, 1)).await.is_err(), "11 bytes, the node's budget is 10");
        drop((first, second));
        assert!(held.room(&from_a, 6).await.is_some(), "the room came back");
    }

    #[test]
    fn bounds_are_checked_against_the_frame() {
        assert!(Bounds::default().validate(16 << 20).is_ok());
        let small = Bounds { buffered_bytes: 1024, ..Bounds::default() };
        assert!(small.validate(4096).unwrap_err().to_string().contains("cannot hold one request"));
        assert!(Bounds { streams_per_connection: 0, ..Bounds::default() }.validate(1).is_err());
    }
}
