//! Where Microsoft lives and who we are in each customer tenant. Every base URL is
//! configurable: national clouds have their own, and tests point them at the simulator.

use std::collections::BTreeMap;

use offboard_core::domain::TenantId;
use serde::{Deserialize, Serialize};

use crate::secret::{Secret, Vault, VaultError};

/// The base URLs of one Microsoft cloud, without trailing slashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    /// Entra ID: `{login}/{tenant}/oauth2/v2.0/token`.
    pub login: String,
    /// Microsoft Graph, without the version: `{graph}/v1.0/...`.
    pub graph: String,
    /// Exchange Online: `{exchange}/adminapi/beta/{tenant}/InvokeCommand`.
    pub exchange: String,
    /// SharePoint's host suffix, e.g. `sharepoint.com`.
    pub sharepoint_suffix: String,
    /// The resources tokens are asked for; they differ from the URLs only in national clouds
    /// and in tests (the simulator accepts the global names).
    pub graph_resource: String,
    pub exchange_resource: String,
}

impl Endpoints {
    pub fn global() -> Self {
        Self::cloud("https://login.microsoftonline.com", "https://graph.microsoft.com", "https://outlook.office365.com", "sharepoint.com")
    }

    /// GCC High.
    pub fn us_government() -> Self {
        Self::cloud("https://login.microsoftonline.us", "https://graph.microsoft.us", "https://outlook.office365.us", "sharepoint.us")
    }

    /// Operated by 21Vianet.
    pub fn china() -> Self {
        Self::cloud("https://login.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn", "https://partner.outlook.cn", "sharepoint.cn")
    }

    fn cloud(login: &str, graph: &str, exchange: &str, sp: &str) -> Self {
        Self {
            login: login.into(),
            graph: graph.into(),
            exchange: exchange.into(),
            sharepoint_suffix: sp.into(),
            graph_resource: graph.into(),
            exchange_resource: exchange.into(),
        }
    }

    /// Global resource names with other base URLs (the simulator, a proxy).
    pub fn at(login: &str, graph: &str, exchange: &str) -> Self {
        Self {
            login: login.trim_end_matches('/').into(),
            graph: graph.trim_end_matches('/').into(),
            exchange: exchange.trim_end_matches('/').into(),
            ..Self::global()
        }
    }

    pub fn token_url(&self, directory: &str) -> String {
        format!("{}/{directory}/oauth2/v2.0/token", self.login)
    }
}

/// How the app proves who it is in a tenant.
#[derive(Clone, Debug)]
pub enum Credential {
    Secret(Secret),
    /// Preferred: a certificate registered on the app; we sign a short-lived assertion.
    Certificate {
        /// PKCS#8 PEM of the RSA private key.
        private_key_pem: Secret,
        /// Hex SHA-256 thumbprint of the certificate, as Entra shows it.
        thumbprint_sha256: String,
    },
}

/// One customer tenant as the engine sees it.
#[derive(Clone, Debug)]
pub struct TenantConfig {
    /// The name requests use (a primary domain), e.g. `contoso.com`.
    pub key: TenantId,
    /// Entra directory (tenant) id.
    pub directory_id: String,
    pub client_id: String,
    pub credential: Credential,
    /// Verified domains: a UPN in one of them resolves to this tenant.
    pub domains: Vec<String>,
}

/// A credential as stored: the secret parts sealed by the [`Vault`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoredCredential {
    Secret { sealed: String },
    Certificate { sealed_key: String, thumbprint_sha256: String },
}

impl StoredCredential {
    pub fn seal(credential: &Credential, vault: &Vault, directory_id: &str) -> Self {
        match credential {
            Credential::Secret(s) => Self::Secret { sealed: vault.seal(s, directory_id) },
            Credential::Certificate { private_key_pem, thumbprint_sha256 } => {
                Self::Certificate { sealed_key: vault.seal(private_key_pem, directory_id), thumbprint_sha256: thumbprint_sha256.clone() }
            }
        }
    }

    pub fn open(&self, vault: &Vault, directory_id: &str) -> Result<Credential, VaultError> {
        Ok(match self {
            Self::Secret { sealed } => Credential::Secret(vault.open(sealed, directory_id)?),
            Self::Certificate { sealed_key, thumbprint_sha256 } => {
                Credential::Certificate { private_key_pem: vault.open(sealed_key, directory_id)?, thumbprint_sha256: thumbprint_sha256.clone() }
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    /// Tell the requester: this tenant is not configured.
    #[error("unknown tenant {0}: it is not configured in Offboard")]
    Unknown(String),
}

/// Every configured tenant, looked up by key, directory id or verified domain.
#[derive(Clone, Debug, Default)]
pub struct Tenants {
    by_key: BTreeMap<String, TenantConfig>,
}

impl Tenants {
    pub fn new(tenants: impl IntoIterator<Item = TenantConfig>) -> Self {
        Self { by_key: tenants.into_iter().map(|t| (t.key.as_str().to_ascii_lowercase(), t)).collect() }
    }

    pub fn get(&self, key: &TenantId) -> Result<&TenantConfig, TenantError> {
        self.find(key.as_str()).ok_or_else(|| TenantError::Unknown(key.to_string()))
    }

    pub fn find(&self, name: &str) -> Option<&TenantConfig> {
        let n = name.to_ascii_lowercase();
        self.by_key
            .get(&n)
            .or_else(|| self.by_key.values().find(|t| t.directory_id.eq_ignore_ascii_case(&n) || t.domains.iter().any(|d| d.eq_ignore_ascii_case(&n))))
    }

    /// The tenant a UPN's domain belongs to.
    pub fn for_upn(&self, upn: &str) -> Option<&TenantConfig> {
        upn.rsplit_once('@').and_then(|(_, d)| self.find(d))
    }

    pub fn all(&self) -> impl Iterator<Item = &TenantConfig> {
        self.by_key.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_credentials_round_trip_sealed() {
        let vault = Vault::from_base64(&Vault::generate_key()).unwrap();
        let c = Credential::Secret(Secret::new("abc~def"));
        let stored = StoredCredential::seal(&c, &vault, "dir-1");
        let json = serde_json::to_string(&stored).unwrap();
        assert!(!json.contains("abc~def"));
        match stored.open(&vault, "dir-1").unwrap() {
            Credential::Secret(s) => assert_eq!(s.expose(), "abc~def"),
            other => panic!("{other:?}"),
        }
        assert_eq!(stored.open(&vault, "dir-2").unwrap_err(), VaultError::CannotOpen);
    }

    #[test]
    fn tenants_resolve_by_key_id_and_domain() {
        let t = TenantConfig {
            key: TenantId::parse("contoso.com").unwrap(),
            directory_id: "6f1c2a7e-3b4d-4e5f-8a9b-0c1d2e3f4a5b".into(),
            client_id: "c".into(),
            credential: Credential::Secret(Secret::new("x")),
            domains: vec!["contoso.com".into(), "contoso.onmicrosoft.com".into()],
        };
        let all = Tenants::new([t]);
        assert!(all.find("CONTOSO.com").is_some());
        assert!(all.find("6F1C2A7E-3b4d-4e5f-8a9b-0c1d2e3f4a5b").is_some());
        assert_eq!(all.for_upn("a@contoso.onmicrosoft.com").unwrap().key.as_str(), "contoso.com");
        assert!(all.for_upn("a@fabrikam.com").is_none());
        assert_eq!(
            all.get(&TenantId::parse("fabrikam.com").unwrap()).unwrap_err().to_string(),
            "unknown tenant fabrikam.com: it is not configured in Offboard"
        );
        assert!(!format!("{:?}", all).contains("\"x\""));
    }
}
