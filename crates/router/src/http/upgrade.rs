//! Protocol upgrades (WebSocket): once the endpoint answers 101, both connections leave HTTP
//! and the proxy copies bytes between them until either side closes.

use super::tracking::Tracking;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// Spawns the tunnel. It runs after the 101 response is sent to the client (hyper completes the
/// client's upgrade only then), so it cannot run inside the request's future. The request stays
/// counted in flight (`tracking`) while the tunnel lives, so a drain waits for it.
pub(super) fn spawn_tunnel(client: OnUpgrade, upstream: OnUpgrade, tracking: Tracking) {
    tokio::spawn(async move {
        let _tracking = tracking;
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%error, "upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(%error, "upgraded connection ended with an error");
        }
    });
}
