//! The requests a caller that routes its own requests sends (the smart client, in Rust and in
//! wasm): what a get's replica reads, its read repair and a handed put are on the wire, written
//! once for every driver.

use alloc::vec::Vec;

use crate::identity::NodeId;
use crate::store::StoreName;
use crate::version::Write;
use crate::wire::Request;

/// The requests of one routed get or put of a key.
#[derive(Clone, Debug)]
pub struct RoutedRequests {
    store: StoreName,
    key: Vec<u8>,
    repair_asked: bool,
}

impl RoutedRequests {
    /// The requests for `key` of `store`.
    pub fn new(store: StoreName, key: Vec<u8>) -> RoutedRequests {
        RoutedRequests { store, key, repair_asked: false }
    }

    /// A replica read of the key (a [`GetCoordinator`](super::GetCoordinator)'s send).
    pub fn read(&self) -> Request {
        Request::Get { store: self.store.clone(), key: self.key.clone() }
    }

    /// What a get's [`Action::Repair`](super::Action::Repair) sends: only nodes write to
    /// replicas, so the first stale replica is asked to coordinate a read of the key, which
    /// repairs every replica that answered with less; later repairs of the same get send
    /// nothing.
    pub fn repair(&mut self) -> Option<Request> {
        let first = !core::mem::replace(&mut self.repair_asked, true);
        first.then(|| Request::CoordinateGet { store: self.store.clone(), key: self.key.clone() })
    }

    /// The put a [`ForwardPut`](super::ForwardPut) hands to replica `to`, which mints it and
    /// coordinates its replication.
    pub fn handed_put(&self, to: &NodeId, write: Write) -> Request {
        Request::CoordinatePut { store: self.store.clone(), key: self.key.clone(), write, minter: Some(to.clone()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::CausalContext;

    #[test]
    fn a_get_repairs_once_and_a_put_names_its_minter() {
        let store = StoreName::default_store();
        let mut requests = RoutedRequests::new(store.clone(), b"k".to_vec());
        assert_eq!(requests.read(), Request::Get { store: store.clone(), key: b"k".to_vec() });
        assert_eq!(requests.repair(), Some(Request::CoordinateGet { store: store.clone(), key: b"k".to_vec() }));
        assert_eq!(requests.repair(), None, "one repair per get");
        let n1 = NodeId::new("n1").unwrap();
        let write = Write::put(b"v".to_vec(), CausalContext::empty(), 1);
        let put = requests.handed_put(&n1, write.clone());
        assert_eq!(put, Request::CoordinatePut { store, key: b"k".to_vec(), write, minter: Some(n1) });
    }
}
