//! Protocol switches (HTTP/1.1 `Upgrade`, e.g. WebSocket): once the instance answers
//! `101 Switching Protocols`, the client's and the instance's connections are spliced together
//! and bytes are copied both ways until either side closes.
//!
//! The splice runs in its own task and holds the request's permit (in flight for the revision
//! and the instance) until it ends.

use http::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::body::Body;
use crate::capacity::Permit;
use crate::headers::strip_hop_by_hop;

/// Turns the instance's `101` into the client's `101` and starts splicing the two connections.
pub(crate) fn splice_response(
    mut resp: Response<Body>,
    client: OnUpgrade,
    permit: Permit,
) -> Response<Body> {
    let instance = hyper::upgrade::on(&mut resp);
    strip_hop_by_hop(resp.headers_mut(), true);
    tokio::spawn(splice(client, instance, permit));
    resp.map(|_| Body::empty())
}

async fn splice(client: OnUpgrade, instance: OnUpgrade, permit: Permit) {
    let (client, instance) = match tokio::try_join!(client, instance) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "protocol switch failed before splicing");
            return;
        }
    };
    let (mut client, mut instance) = (TokioIo::new(client), TokioIo::new(instance));
    match tokio::io::copy_bidirectional(&mut client, &mut instance).await {
        Ok((up, down)) => tracing::trace!(up, down, "upgraded connection closed"),
        Err(e) => tracing::debug!(error = %e, "upgraded connection failed"),
    }
    drop(permit);
}
