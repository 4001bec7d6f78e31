//! Tokens through the oauth2 crate: a secret or a certificate, cached per tenant and
//! resource, renewed after expiry or a 401, refused with Entra's code; and the preflight
//! that names what the app is missing.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use offboard_core::plan::StepKind;
use offboard_core::snapshot::{Discovery, UserRef};
use offboard_m365::auth::{AuthError, Resource};
use offboard_m365::{Credential, Secret};
use offboard_m365_sim::SimConfig;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};

#[tokio::test]
async fn a_certificate_signs_in_and_tokens_are_cached() {
    let w = World::new().await;
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let der = key.to_public_key().to_public_key_der().unwrap();
    let thumb = Sha256::digest(der.as_bytes());
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(thumb);
    w.sim.add_certificate(CONTOSO, APP, &b64, &key.to_public_key().to_public_key_pem(LineEnding::LF).unwrap()).unwrap();
    let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let m = World::adapter(&w.sim, Credential::Certificate { private_key_pem: Secret::new(pem), thumbprint_sha256: hex::encode(thumb) }, fast_settings());
    let tenant = m.tenants().find(CONTOSO).unwrap().clone();
    for _ in 0..5 {
        m.tokens().token(&tenant, Resource::Graph).await.expect("certificate sign-in");
    }
    m.tokens().token(&tenant, Resource::Exchange).await.unwrap();
    assert_eq!(m.tokens().issued(), 2, "one token per (tenant, resource)");
    let s = m.discover(&World::tenant(), &UserRef::Upn(offboard_core::domain::Upn::parse(ALICE).unwrap())).await.unwrap();
    assert_eq!(s.display_name, "Alice Able");
}

#[tokio::test]
async fn a_wrong_secret_is_refused_with_entras_code_and_never_echoed() {
    let w = World::new().await;
    let m = World::adapter(&w.sim, Credential::Secret(Secret::new("not-the-secret~123")), fast_settings());
    let tenant = m.tenants().find(CONTOSO).unwrap().clone();
    match m.tokens().token(&tenant, Resource::Graph).await {
        Err(e @ AuthError::Refused { .. }) => {
            let text = e.to_string();
            assert!(text.contains("AADSTS7000215"), "{text}");
            assert!(!text.contains("not-the-secret"), "{text}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_token_is_renewed_before_it_expires() {
    let w = World::with(SimConfig { manual_clock: true, ..SimConfig::default() }, fast_settings()).await;
    w.discover(ALICE).await;
    assert_eq!(w.m365.tokens().issued(), 2);
    // Past the token's lifetime and the refresh margin: the cache renews before calling.
    w.sim.advance(Duration::from_secs(3700));
    w.discover(ALICE).await;
    assert_eq!(w.m365.tokens().issued(), 4);
}

#[tokio::test]
async fn a_short_lived_token_is_reused_for_half_its_life() {
    // Shorter than the 300 s refresh margin: a fixed margin would fetch a token per call.
    let sim = SimConfig { manual_clock: true, token_lifetime: Duration::from_secs(240), ..SimConfig::default() };
    let w = World::with(sim, fast_settings()).await;
    w.discover(ALICE).await;
    w.discover(ALICE).await;
    assert_eq!(w.m365.tokens().issued(), 2, "one Graph and one Exchange token for both discoveries");
    w.sim.advance(Duration::from_secs(110));
    w.discover(ALICE).await;
    assert_eq!(w.m365.tokens().issued(), 2, "still in the first half of the lifetime");
    w.sim.advance(Duration::from_secs(20));
    w.discover(ALICE).await;
    assert_eq!(w.m365.tokens().issued(), 4, "renewed past half of the lifetime");
}

#[tokio::test]
async fn the_preflight_names_each_missing_permission_and_role_per_tenant() {
    let w = World::new().await;
    let steps = [StepKind::DisableSignIn, StepKind::ResetPassword, StepKind::RemoveGroups, StepKind::DeviceAction, StepKind::ConvertToShared];
    let p = w.m365.preflight(&World::tenant(), &steps).await;
    assert!(p.ready(), "the scenario's app holds everything: {:?}", p.missing);
    w.sim.set_permission(CONTOSO, APP, offboard_m365_sim::token::Resource::Graph, "DeviceManagementManagedDevices.PrivilegedOperations.All", false).unwrap();
    w.sim.set_entra_role(CONTOSO, APP, "User Administrator", false).unwrap();
    w.sim.set_entra_role(CONTOSO, APP, "Privileged Authentication Administrator", false).unwrap();
    // A grant change needs a new token: the preflight asks for one.
    let p = w.m365.preflight(&World::tenant(), &steps).await;
    let missing: Vec<String> = p.missing.iter().map(|m| format!("{}: {}", m.purpose, m.need)).collect();
    assert!(
        missing.contains(&"device_action: the Graph application permission DeviceManagementManagedDevices.PrivilegedOperations.All".to_string()),
        "{missing:?}"
    );
    assert!(missing.contains(&"reset_password: the Entra role User Administrator".to_string()), "{missing:?}");
    assert!(missing.contains(&"admin targets: the Entra role Privileged Authentication Administrator".to_string()), "{missing:?}");
    assert!(!missing.iter().any(|m| m.starts_with("remove_groups")), "{missing:?}");
    let unknown = w.m365.preflight(&offboard_core::domain::TenantId::parse("fabrikam.example").unwrap(), &steps).await;
    assert!(unknown.sign_in_error.unwrap().contains("unknown tenant"));
}
