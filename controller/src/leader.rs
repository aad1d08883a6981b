//! Leader election on a Lease: two controller replicas never reconcile at once.

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

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
