//! Each route needs its least-privileged application permission (or a broader one) and
//! answers Graph's verbatim 403 otherwise; Entra-role rules apply on top.

mod common;

use common::*;
use offboard_m365_sim::graph::required;
use offboard_m365_sim::routes::ROUTES;
use offboard_m365_sim::token::Resource;
use reqwest::Method;
use serde_json::json;

fn path_for(template: &str) -> String {
    template.replace("{id}", "00000000-0000-0000-0000-000000000000").replace("()", "")
}

#[tokio::test]
async fn every_route_refuses_a_token_without_its_permission_and_admits_the_least_privileged_one() {
    let h = Harness::new().await;
    const NONE: &str = "1d2c3b4a-0000-4000-8000-000000000001";
    h.sim.tenant_mut(CONTOSO, |t| {
        let mut app = t.app(READER).unwrap().clone();
        app.client_id = NONE.into();
        app.graph.clear();
        t.apps.push(app);
    });
    let bare = h.token_for(CONTOSO, NONE, GRAPH).await;
    for route in ROUTES {
        let Some(perms) = required(route.op) else { continue };
        let method = Method::from_bytes(route.method.as_bytes()).unwrap();
        let body = (route.method != "GET" && route.method != "DELETE").then(|| json!({}));
        let r = h.call(&bare, method.clone(), &path_for(route.template), body.clone()).await;
        assert_eq!(r.status, 403, "{} {} without permission", route.method, route.template);
        assert!(matches!(r.code(), "Authorization_RequestDenied" | "ErrorAccessDenied"), "{} {}", route.method, route.template);
        if r.code() == "Authorization_RequestDenied" {
            assert_eq!(r.message(), "Insufficient privileges to complete the operation.");
        }
        // The first listed permission is the least privileged one; it is enough.
        h.sim.tenant_mut(CONTOSO, |t| {
            let a = t.app_mut(NONE).unwrap();
            a.graph.clear();
            a.graph.insert(perms[0].to_string());
        });
        let least = h.token_for(CONTOSO, NONE, GRAPH).await;
        let r = h.call(&least, method, &path_for(route.template), body).await;
        if route.template == "/users/{id}/authentication/methods/{id}/resetPassword" {
            assert_eq!(r.status, 403, "application permissions are not supported for resetPassword");
        } else {
            assert_ne!(r.status, 403, "{} {} with {}", route.method, route.template, perms[0]);
        }
    }
}

#[tokio::test]
async fn a_permission_granted_after_the_token_was_issued_needs_a_new_token() {
    let h = Harness::new().await;
    let before = h.token_for(CONTOSO, READER, GRAPH).await;
    let alice = h.user_id("alice.able@contoso.com").await;
    assert_eq!(h.call(&before, Method::POST, &format!("/users/{alice}/revokeSignInSessions"), None).await.status, 403);
    h.sim.set_permission(CONTOSO, READER, Resource::Graph, "User.RevokeSessions.All", true).unwrap();
    assert_eq!(h.call(&before, Method::POST, &format!("/users/{alice}/revokeSignInSessions"), None).await.status, 403, "roles are fixed at issue");
    let after = h.token_for(CONTOSO, READER, GRAPH).await;
    assert_eq!(h.call(&after, Method::POST, &format!("/users/{alice}/revokeSignInSessions"), None).await.status, 200);
}

#[tokio::test]
async fn password_reset_needs_user_administrator_and_admin_targets_need_privileged_authentication_administrator() {
    let h = Harness::new().await;
    let alice = h.user_id("alice.able@contoso.com").await;
    let dave = h.user_id("dave.admin@contoso.com").await;
    let reset = json!({"passwordProfile": {"password": "Xy7!long-enough-pass", "forceChangePasswordNextSignIn": true}});
    for role in ["User Administrator", "Privileged Authentication Administrator"] {
        h.sim.set_entra_role(CONTOSO, APP, role, false).unwrap();
    }
    let none = h.token().await;
    assert_eq!(h.call(&none, Method::PATCH, &format!("/users/{alice}"), Some(reset.clone())).await.code(), "Authorization_RequestDenied");

    h.sim.set_entra_role(CONTOSO, APP, "User Administrator", true).unwrap();
    let ua = h.token().await;
    assert_eq!(h.call(&ua, Method::PATCH, &format!("/users/{alice}"), Some(reset.clone())).await.status, 204);
    assert_eq!(h.call(&ua, Method::PATCH, &format!("/users/{dave}"), Some(reset.clone())).await.status, 403, "Dave is a Global Administrator");
    assert_eq!(h.call(&ua, Method::PATCH, &format!("/users/{dave}"), Some(json!({"accountEnabled": false}))).await.status, 403);
    assert_eq!(h.call(&ua, Method::DELETE, &format!("/users/{dave}"), None).await.status, 403);

    h.sim.set_entra_role(CONTOSO, APP, "Privileged Authentication Administrator", true).unwrap();
    let paa = h.token().await;
    assert_eq!(h.call(&paa, Method::PATCH, &format!("/users/{dave}"), Some(reset.clone())).await.status, 204);
    assert_eq!(h.call(&paa, Method::PATCH, &format!("/users/{dave}"), Some(json!({"accountEnabled": false}))).await.status, 204);

    let weak = json!({"passwordProfile": {"password": "short", "forceChangePasswordNextSignIn": true}});
    assert_eq!(
        h.call(&paa, Method::PATCH, &format!("/users/{alice}"), Some(weak)).await.message(),
        "The specified password does not comply with password complexity requirements. Please provide a different password."
    );
    // The password is never recorded: the ledger holds only the fact.
    let text = serde_json::to_string(&h.sim.ledger()).unwrap();
    assert!(!text.contains("Xy7!long-enough-pass"));
    assert_eq!(h.sim.count("user.password_reset", &alice), 1);
}

#[tokio::test]
async fn reset_password_method_works_only_with_delegated_access() {
    let h = Harness::new().await;
    let alice = h.user_id("alice.able@contoso.com").await;
    let path = format!("/users/{alice}/authentication/methods/28c10230-6103-485e-b985-444c60001490/resetPassword");
    let app = h.token().await;
    assert_eq!(h.call(&app, Method::POST, &path, Some(json!({"newPassword": "Xy7!long-enough-pass"}))).await.status, 403);
    let refresh = h.sim.mint_refresh_token(CONTOSO, APP, "dave.admin@contoso.com", &["UserAuthenticationMethod.ReadWrite.All"]).unwrap();
    let secret = h.sim.add_secret(CONTOSO, APP).unwrap();
    let r = h
        .http
        .post(format!("{}/{CONTOSO}/oauth2/v2.0/token", h.sim.urls().login))
        .form(&[("grant_type", "refresh_token"), ("client_id", APP), ("client_secret", &secret), ("refresh_token", &refresh), ("scope", GRAPH)])
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["refresh_token"].as_str().is_some_and(|n| n != refresh), "refresh tokens rotate");
    let delegated = v["access_token"].as_str().unwrap();
    let r = h.call(delegated, Method::POST, &path, Some(json!({"newPassword": "Xy7!long-enough-pass"}))).await;
    assert_eq!(r.status, 202);
    assert!(r.header("location").unwrap().contains("/authentication/operations/"));
}

#[tokio::test]
async fn role_assignable_groups_need_role_management_permission() {
    let h = Harness::new().await;
    let group = h.group_id("Helpdesk Admins (PIM)").await;
    let quinn = h.user_id("quinn.pim@contoso.com").await;
    h.sim.set_permission(CONTOSO, APP, Resource::Graph, "RoleManagement.ReadWrite.Directory", false).unwrap();
    let tok = h.token().await;
    assert_eq!(h.call(&tok, Method::DELETE, &format!("/groups/{group}/members/{quinn}/$ref"), None).await.status, 403);
    h.sim.set_permission(CONTOSO, APP, Resource::Graph, "RoleManagement.ReadWrite.Directory", true).unwrap();
    let tok = h.token().await;
    assert_eq!(h.call(&tok, Method::DELETE, &format!("/groups/{group}/members/{quinn}/$ref"), None).await.status, 204);
}

#[tokio::test]
async fn active_and_eligible_roles_are_listed_and_removed_separately() {
    let h = Harness::new().await;
    let tok = h.token().await;
    let dave = h.user_id("dave.admin@contoso.com").await;
    let active = h.get(&tok, &format!("/roleManagement/directory/roleAssignments?$filter=principalId eq '{dave}'&$expand=roleDefinition")).await;
    let active = active.body["value"].as_array().unwrap().clone();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0]["roleDefinition"]["displayName"], "Global Administrator");
    let eligible = h.get(&tok, &format!("/roleManagement/directory/roleEligibilitySchedules?$filter=principalId eq '{dave}'")).await.body["value"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(eligible.len(), 1);
    assert_eq!(
        h.call(&tok, Method::DELETE, &format!("/roleManagement/directory/roleAssignments/{}", active[0]["id"].as_str().unwrap()), None).await.status,
        204
    );
    let body = json!({"action": "adminRemove", "principalId": dave, "roleDefinitionId": eligible[0]["roleDefinitionId"], "directoryScopeId": "/"});
    let r = h.call(&tok, Method::POST, "/roleManagement/directory/roleEligibilityScheduleRequests", Some(body.clone())).await;
    assert_eq!(r.status, 201);
    let r = h.call(&tok, Method::POST, "/roleManagement/directory/roleEligibilityScheduleRequests", Some(body)).await;
    assert_eq!((r.status, r.code()), (400, "RoleAssignmentDoesNotExist"));
    assert_eq!(h.kinds(&dave), vec!["role.assignment_removed", "role.eligibility_removed"]);
}

#[tokio::test]
async fn outlook_routes_answer_access_denied_in_outlook_words() {
    let h = Harness::new().await;
    let tok = h.token_for(CONTOSO, READER, GRAPH).await;
    let r = h.get(&tok, "/users/alice.able@contoso.com/mailboxSettings").await;
    assert_eq!((r.status, r.code(), r.message()), (403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."));
}
