//! Leader election on a Lease: two controller replicas never reconcile at once. The leader
//! runs the Functions' reconciler and the triggers; a standby waits.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{reconcile, triggers};

/// How long reconciles in flight get to finish at a graceful stop (they never wait for builds).
const RECONCILES_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("electing a leader: {0}")]
    Elect(#[from] LeaseManagerError),
    #[error("the lease manager stopped")]
    Stopped,
}

/// What a leader runs, and who it is.
pub struct Term<'a> {
    pub ctx: Arc<reconcile::Context>,
    pub triggers: Arc<triggers::Context>,
    pub lease_namespace: &'a str,
    /// This replica's name in the Lease.
    pub identity: String,
}

/// Our hold on the Lease, kept fresh in the background.
pub struct Leadership {
    /// Whether we lead now.
    pub leading: watch::Receiver<bool>,
    task: JoinHandle<Result<LeaseManager, LeaseManagerError>>,
}

impl Leadership {
    pub async fn elect(
        client: Client,
        namespace: &str,
        identity: String,
    ) -> Result<Self, LeaseManagerError> {
        let manager = LeaseManagerBuilder::new(client, crate::reconcile::MANAGER)
            .with_namespace(namespace)
            .with_identity(identity)
            .with_duration(15)
            .with_grace(5)
            .build()
            .await?;
        let (leading, task) = manager.watch().await;
        Ok(Self { leading, task })
    }

    /// Gives the Lease up, so a standby replica takes over now rather than when it expires.
    pub async fn release(self) {
        drop(self.leading); // closing the channel makes the manager release and stop
        match tokio::time::timeout(std::time::Duration::from_secs(5), self.task).await {
            Ok(Ok(Ok(_))) => tracing::info!("lease released"),
            Ok(Ok(Err(e))) => tracing::warn!("releasing the lease: {e}"),
            Ok(Err(e)) => tracing::warn!("lease task: {e}"),
            Err(_) => tracing::warn!("the lease was not released within 5 s; it will expire"),
        }
    }
}

/// Reconciles while this replica holds the Lease; waits while another does. Returns soon after
/// `stop` is cancelled, in every state; stops writing as soon as the Lease is lost.
pub async fn reconcile_while_leading(
    client: Client,
    term: Term<'_>,
    stop: &CancellationToken,
) -> Result<(), LeaderError> {
    let Term {
        ctx,
        triggers,
        lease_namespace,
        identity,
    } = term;
    let mut leadership = tokio::select! {
        () = stop.cancelled() => return Ok(()),
        l = Leadership::elect(client, lease_namespace, identity.clone()) => l?,
    };
    loop {
        tracing::info!(%identity, "waiting to lead");
        tokio::select! {
            () = stop.cancelled() => break,
            r = leadership.leading.wait_for(|l| *l) => { r.map_err(|_| LeaderError::Stopped)?; }
        }
        tracing::info!(%identity, "leading: reconciling Functions and triggers");
        let mut lost = leadership.leading.clone();
        let term = futures::future::join(
            reconcile::run(
                ctx.clone(),
                leadership.leading.clone(),
                stop.clone().cancelled_owned(),
            ),
            triggers::run(
                triggers.clone(),
                leadership.leading.clone(),
                stop.clone().cancelled_owned(),
            ),
        );
        tokio::pin!(term);
        tokio::select! {
            _ = &mut term => {}
            // Dropping the term ends every reconcile in flight: nothing more is written.
            _ = lost.wait_for(|l| !*l) => {
                tracing::warn!(%identity, "lost the lease: stopped reconciling");
                continue;
            }
            () = stop.cancelled() => {
                if tokio::time::timeout(RECONCILES_GRACE, &mut term).await.is_err() {
                    tracing::warn!("reconciles still running {} s after the stop signal: stopped", RECONCILES_GRACE.as_secs());
                }
                break;
            }
        }
        // The term ended by itself: stopped, or its watches ended.
        if stop.is_cancelled() {
            break;
        }
    }
    leadership.release().await;
    Ok(())
}
