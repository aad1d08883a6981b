//! Leader election on a Lease: two controller replicas never reconcile at once.

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

/// Holds the Lease while the returned receiver lives; it says whether we lead. Dropping it
/// releases the Lease.
pub async fn elect(
    client: Client,
    namespace: &str,
    identity: String,
) -> Result<watch::Receiver<bool>, kube_lease_manager::LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client, crate::reconcile::MANAGER)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(15)
        .with_grace(5)
        .build()
        .await?;
    let (leading, task) = manager.watch().await;
    tokio::spawn(async move {
        match task.await {
            Ok(Err(e)) => tracing::warn!("lease: {e}"),
            Err(e) => tracing::warn!("lease task: {e}"),
            Ok(Ok(_)) => tracing::info!("lease released"),
        }
    });
    Ok(leading)
}
