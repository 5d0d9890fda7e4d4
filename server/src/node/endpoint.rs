//! The endpoint: one task per connection, one per request stream, feeding the driver.
//!
//! A request is read to the end of its stream (never more than the frame limit: a longer one is
//! stopped and refused unread), decoded here, off the driver, and handed to the driver with a
//! channel for its answer, which is encoded here and written back on the same stream. Whether
//! the caller is a node is decided by the handshake: a certificate of the cluster CA.

use quickv_core::wire::{self, Message};
use tokio::sync::{mpsc, oneshot};

use super::driver::{Frame, Input};

/// Accepts connections until the endpoint closes.
pub(crate) async fn accept(endpoint: quinn::Endpoint, inputs: mpsc::UnboundedSender<Input>, max_frame: usize) {
    while let Some(incoming) = endpoint.accept().await {
        let inputs = inputs.clone();
        tokio::spawn(async move {
            let connection = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!("handshake failed: {e}");
                    return;
                }
            };
            let from_node = connection.peer_identity().is_some();
            while let Ok((send, recv)) = connection.accept_bi().await {
                tokio::spawn(serve_stream(inputs.clone(), send, recv, from_node, max_frame));
            }
        });
    }
}

async fn serve_stream(
    inputs: mpsc::UnboundedSender<Input>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    from_node: bool,
    max_frame: usize,
) {
    let frame = match recv.read_to_end(max_frame).await {
        Ok(bytes) => match wire::decode(&bytes) {
            Ok(message) => Frame::Decoded(message),
            Err(_) => Frame::Undecodable(bytes),
        },
        Err(quinn::ReadToEndError::TooLong) => {
            let _ = recv.stop(0u32.into());
            Frame::Oversized
        }
        Err(_) => return,
    };
    let (reply, answer) = oneshot::channel::<Message>();
    if inputs.send(Input::Request { from_node, frame, reply }).is_err() {
        return;
    }
    let Ok(message) = answer.await else { return };
    let _ = send.write_all(&wire::encode(&message)).await;
    let _ = send.finish();
    let _ = send.stopped().await;
}
