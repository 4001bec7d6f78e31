//! Core's [`ChannelFiles`] port on Microsoft Graph: the report's copy in a Teams channel's
//! SharePoint folder (`filesFolder`, then a path-addressed upload into it), in the tenant
//! the bot's channels are in.

use std::sync::Arc;

use async_trait::async_trait;
use offboard_core::chat::files::{ChannelFiles, ChannelPlace, Filed, FilingError};
use offboard_core::domain::TenantId;

use crate::M365;
use crate::auth::Resource;
use crate::graph::enc;
use crate::permissions::{Grants, Need};
use crate::trace::Trace;
use crate::transport::Cx;

/// Reading a channel's folder and writing into it: `Files.Read.All` covers the first only.
const FILING_ANY: &[&str] = &["Files.ReadWrite.All", "Sites.ReadWrite.All"];
pub const FILING: Need = Need::Graph(FILING_ANY);

/// A channel's files in one tenant.
pub struct TeamsFiles {
    m365: Arc<M365>,
    tenant: TenantId,
}

impl TeamsFiles {
    pub fn new(m365: Arc<M365>, tenant: TenantId) -> Self {
        TeamsFiles { m365, tenant }
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// Whether the app may file reports here, from what its token grants now: `Ok` with
    /// the permission that allows it. `fresh` asks Entra for a new token first (`doctor`:
    /// a grant made a minute ago is only in a new one).
    pub async fn granted(&self, fresh: bool) -> Result<&'static str, FilingError> {
        let t = self.m365.tenants().get(&self.tenant).map_err(|e| FilingError::Failed(e.to_string()))?;
        if fresh {
            self.m365.tokens().invalidate(&t.directory_id);
        }
        let token = self.m365.tokens().token(t, Resource::Graph).await.map_err(|e| FilingError::Failed(format!("no Graph token for {}: {e}", self.tenant)))?;
        let mut grants = Grants::default();
        grants.add(Resource::Graph, &token);
        FILING_ANY
            .iter()
            .find(|p| grants.satisfies(&Need::Graph(std::slice::from_ref(*p))))
            .copied()
            .ok_or_else(|| FilingError::NotGranted(format!("grant {} in tenant {}", FILING.label(), self.tenant)))
    }
}

#[async_trait]
impl ChannelFiles for TeamsFiles {
    async fn file(&self, place: &ChannelPlace, name: &str, bytes: &[u8]) -> Result<Filed, FilingError> {
        self.granted(false).await?;
        let t = self.m365.tenants().get(&self.tenant).map_err(|e| FilingError::Failed(e.to_string()))?;
        let trace = Trace::new();
        let cx = Cx::new(t, &trace);
        let graph = self.m365.graph();
        let failed = |what: &str, e: crate::error::ApiError| FilingError::Failed(format!("{what}: {e}"));
        let folder = graph
            .get(cx, &format!("/teams/{}/channels/{}/filesFolder?$select=id,parentReference", enc(&place.team), enc(&place.channel)))
            .await
            .map_err(|e| failed("could not find the channel's files", e))?;
        let (Some(drive), Some(item)) = (folder["parentReference"]["driveId"].as_str(), folder["id"].as_str()) else {
            return Err(FilingError::Failed("the channel's files folder came back without its drive".into()));
        };
        let path = format!("/drives/{}/items/{}:/{}:/content", enc(drive), enc(item), enc(name));
        let uploaded = graph.put_content(cx, &path, "application/pdf", bytes.to_vec()).await.map_err(|e| failed("could not upload the report", e))?;
        let web_url = uploaded["webUrl"].as_str().ok_or_else(|| FilingError::Failed("the uploaded file came back without its address".into()))?;
        Ok(Filed { web_url: web_url.to_string() })
    }
}
