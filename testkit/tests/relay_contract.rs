//! The relay contract against core's recording surface, on both backends. Each platform
//! runs the same contract against its own surface in its adapter's tests.

use std::sync::Arc;

use offboard_core::testing::RecordingSurface;
use offboard_testkit::TestDb;
use offboard_testkit::relay_contract::relay_contract;

#[tokio::test]
async fn the_relay_keeps_its_contract_on_the_recording_surface() {
    for db in TestDb::all().await {
        let store = db.store().await;
        let surface = Arc::new(RecordingSurface::default());
        let seen = surface.clone();
        relay_contract(store.clone(), surface.clone(), move || seen.posted(), "approvals-contoso", "approvals-fabrikam").await;
        // One thread per run that reached one, opened once however often the relay ran.
        assert_eq!(surface.threads_opened(), 1, "{}", db.backend);
        store.close().await;
        db.cleanup().await;
    }
}
