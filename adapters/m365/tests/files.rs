//! The report's copy in a Teams channel's Files, against the simulated tenant over HTTP:
//! filed where the app may write files, never tried where it may not.

mod common;

use std::sync::Arc;

use common::*;
use offboard_core::chat::files::{ChannelFiles, ChannelPlace, FilingError};
use offboard_core::domain::TenantId;
use offboard_m365::files::TeamsFiles;
use offboard_m365::{Credential, Endpoints, M365, Secret, TenantConfig, Tenants};

const CHANNEL: &str = "19:it-approvals@thread.tacv2";
const READER: &str = "3c2b1a09-8f7e-4d6c-9b5a-4f3e2d1c0b9a";

#[tokio::test]
async fn reports_are_filed_in_the_channel_only_where_the_app_may_write_files() {
    let w = World::new().await;
    let team = w.sim.tenant(CONTOSO, |t| t.group_id("IT Operations")).flatten().expect("the IT team");
    let files = TeamsFiles::new(w.m365.clone(), World::tenant());
    assert_eq!(files.granted(true).await, Ok("Files.ReadWrite.All"));
    let place = ChannelPlace { team: team.clone(), channel: CHANNEL.into() };
    let filed = files.file(&place, "ob-7k2m9q4x1p.pdf", b"%PDF-1.7 report").await.expect("filed");
    assert!(filed.web_url.ends_with("/sites/ITOperations/Shared%20Documents/IT%20Approvals/ob-7k2m9q4x1p.pdf"), "{}", filed.web_url);
    let stored = w.sim.tenant(CONTOSO, |t| {
        let site = t.groups[&team].site.as_ref().unwrap();
        site.channels.iter().find(|c| c.channel == CHANNEL).unwrap().files["ob-7k2m9q4x1p.pdf"].clone()
    });
    let stored = stored.unwrap();
    assert_eq!((stored.bytes.as_slice(), stored.content_type.as_str()), (b"%PDF-1.7 report".as_slice(), "application/pdf"));

    // A channel the team does not have: said, not hidden.
    let elsewhere = ChannelPlace { team: team.clone(), channel: "19:gone@thread.tacv2".into() };
    match files.file(&elsewhere, "ob-7k2m9q4x1p.pdf", b"%PDF").await {
        Err(FilingError::Failed(why)) => assert!(why.contains("could not find the channel's files"), "{why}"),
        other => panic!("{other:?}"),
    }

    // An app that may only read the directory: filing is off, and Graph is not asked.
    let secret = w.sim.add_secret(CONTOSO, READER).expect("the reader app");
    let u = w.sim.urls();
    let reader = TenantConfig {
        key: World::tenant(),
        directory_id: CONTOSO_ID.into(),
        client_id: READER.into(),
        credential: Credential::Secret(Secret::new(secret)),
        domains: vec![CONTOSO.into()],
    };
    let m365 = M365::new(Endpoints::at(&u.login, &u.graph, &u.exchange), Tenants::new([reader]), Arc::new(SimTime(w.sim.clock().clone())), fast_settings());
    let reader = TeamsFiles::new(Arc::new(m365), TenantId::parse(CONTOSO).unwrap());
    let asked = w.sim.graph_requests().len();
    match reader.file(&place, "ob-other.pdf", b"%PDF").await {
        Err(FilingError::NotGranted(how)) => assert!(how.contains("Files.ReadWrite.All") && how.contains(CONTOSO), "{how}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.sim.graph_requests().len(), asked, "nothing was sent to Graph");
}
