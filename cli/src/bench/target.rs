//! Where `quickv bench` sends its requests: through the smart client, straight to each key's
//! replicas, or (`--via ADDR`) to one node that coordinates every request for a plain caller.

use std::net::SocketAddr;

use quickv_client::transport::Transport;
use quickv_client::{CausalContext, Store, StoreName, Value};
use quickv_core::version::Write;
use quickv_core::wire::{Request, Response};

/// The requests' way in.
pub enum Target {
    /// The smart client.
    Smart(Store),
    /// One coordinating node.
    Via {
        /// A plain (certificate-less) QUIC caller.
        transport: Transport,
        /// The node.
        addr: SocketAddr,
        /// The store.
        store: StoreName,
    },
}

/// A read's result: whether a value was there, and the context to write over it with.
pub struct Read {
    /// The key held a value.
    pub present: bool,
    /// What the read saw.
    pub context: CausalContext,
}

impl Target {
    /// `smart` or `via`.
    pub fn mode(&self) -> &'static str {
        match self {
            Target::Smart(_) => "smart",
            Target::Via { .. } => "via",
        }
    }

    /// Reads `key`.
    pub async fn read(&self, key: Vec<u8>) -> Result<Read, String> {
        match self {
            Target::Smart(store) => {
                let read = store.get(key).await.map_err(|e| e.to_string())?;
                Ok(Read { present: !read.is_absent(), context: read.context })
            }
            Target::Via { transport, addr, store } => {
                let request = Request::CoordinateGet { store: store.clone(), key };
                match transport.call(*addr, None, request).await.map_err(|e| e.to_string())? {
                    Response::State(Some(state)) => {
                        Ok(Read { present: !state.siblings.is_absent(), context: state.context() })
                    }
                    Response::State(None) => Ok(Read { present: false, context: CausalContext::empty() }),
                    other => Err(unexpected(other)),
                }
            }
        }
    }

    /// Writes `value` to `key` over what `context` saw; returns the new context.
    pub async fn write(&self, key: Vec<u8>, value: Value, context: CausalContext) -> Result<CausalContext, String> {
        match self {
            Target::Smart(store) => store.put(key, value, &context).await.map_err(|e| e.to_string()),
            Target::Via { transport, addr, store } => {
                let write = Write::put(value, context, now_millis());
                let request = Request::CoordinatePut { store: store.clone(), key, write, minter: None };
                match transport.call(*addr, None, request).await.map_err(|e| e.to_string())? {
                    Response::State(Some(state)) => Ok(state.context()),
                    other => Err(unexpected(other)),
                }
            }
        }
    }

    /// A no-op request routed as a read of `key`, carrying `payload`.
    pub async fn ping(&self, key: Vec<u8>, payload: Vec<u8>) -> Result<(), String> {
        match self {
            Target::Smart(store) => store.ping(key, payload).await.map(drop).map_err(|e| e.to_string()),
            Target::Via { transport, addr, store } => {
                let request = Request::Ping { store: store.clone(), key, payload };
                match transport.call(*addr, None, request).await.map_err(|e| e.to_string())? {
                    Response::Ack => Ok(()),
                    other => Err(unexpected(other)),
                }
            }
        }
    }
}

fn unexpected(answer: Response) -> String {
    match answer {
        Response::Error(e) => format!("{:?}: {}", e.kind, e.message),
        other => format!("unexpected answer {other:?}"),
    }
}

fn now_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
