//! Cross-effects and verbatim errors of the simulated Graph, through real HTTP.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::json;

const SYNCED: &str = "Unable to update the specified properties for on-premises mastered Directory Sync objects or objects currently undergoing migration.";

#[tokio::test]
async fn synced_users_and_groups_refuse_writes_verbatim() {
    let h = Harness::new().await;
    let tok = h.token().await;
    let bob = h.user_id("bob.synced@contoso.com").await;
    let r = h.call(&tok, Method::PATCH, &format!("/users/{bob}"), Some(json!({"accountEnabled": false}))).await;
    assert_eq!((r.status, r.code(), r.message()), (400, "Request_BadRequest", SYNCED));
    let r = h.call(&tok, Method::PATCH, &format!("/users/{bob}"), Some(json!({"onPremisesImmutableId": null}))).await;
    assert_eq!((r.status, r.message()), (400, SYNCED));
    let r = h.call(&tok, Method::DELETE, &format!("/users/{bob}"), None).await;
    assert_eq!((r.status, r.message()), (400, SYNCED));
    let hq = h.group_id("HQ Staff (AD)").await;
    let alice = h.user_id("alice.able@contoso.com").await;
    let r = h.call(&tok, Method::DELETE, &format!("/groups/{hq}/members/{alice}/$ref"), None).await;
    assert_eq!((r.status, r.message()), (400, SYNCED));
    // Revoking sessions works on a synced user: nothing on-premises owns it.
    let r = h.call(&tok, Method::POST, &format!("/users/{bob}/revokeSignInSessions"), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["value"], true);
    assert_eq!(h.sim.count("user.disabled", &bob), 0);
}

#[tokio::test]
async fn distribution_lists_and_mail_enabled_security_groups_refuse_graph_member_changes() {
    let h = Harness::new().await;
    let tok = h.token().await;
    let alice = h.user_id("alice.able@contoso.com").await;
    for g in ["Sales DL", "Finance Approvers"] {
        let gid = h.group_id(g).await;
        let r = h.call(&tok, Method::DELETE, &format!("/groups/{gid}/members/{alice}/$ref"), None).await;
        assert_eq!((r.status, r.message()), (400, "Cannot Update a mail-enabled security groups and or distribution list."), "{g}");
    }
    // Exchange can.
    let exo = h.token_for(CONTOSO, APP, EXCHANGE).await;
    let r = h
        .exo(
            &exo,
            CONTOSO,
            "Remove-DistributionGroupMember",
            json!({"Identity": "Sales DL", "Member": "alice.able@contoso.com", "BypassSecurityGroupManagerCheck": true, "Confirm": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(h.kinds(&alice).contains(&"group.member_removed".to_string()));
    // A second removal is an Exchange error, not a silent success.
    let r = h.exo(&exo, CONTOSO, "Remove-DistributionGroupMember", json!({"Identity": "Sales DL", "Member": "alice.able@contoso.com"})).await;
    assert_eq!(r.status, 400);
    assert!(r.body["error"]["details"][0]["message"].as_str().unwrap().contains("MemberNotFoundException"));
}

#[tokio::test]
async fn group_inherited_licences_refuse_assign_licence_and_leave_with_the_group() {
    let h = Harness::new().await;
    let tok = h.token().await;
    let carol = h.user_id("carol.group@contoso.com").await;
    let e3 = h.sim.tenant(CONTOSO, |t| t.sku_by_part("SPE_E3").unwrap().id.clone()).unwrap();
    let r = h.get(&tok, &format!("/users/{carol}?$select=licenseAssignmentStates")).await;
    let states = r.body["licenseAssignmentStates"].as_array().unwrap().clone();
    let group = h.group_id("Licensed Users E3").await;
    assert!(states.iter().any(|s| s["skuId"] == e3.as_str() && s["assignedByGroup"] == group.as_str()));
    let r = h.call(&tok, Method::POST, &format!("/users/{carol}/assignLicense"), Some(json!({"addLicenses": [], "removeLicenses": [e3]}))).await;
    assert_eq!((r.status, r.message()), (400, "User license is inherited from a group membership and it cannot be removed directly from the user."));
    // Both parameters are required, as in the CSDL.
    let r = h.call(&tok, Method::POST, &format!("/users/{carol}/assignLicense"), Some(json!({"removeLicenses": [e3]}))).await;
    assert_eq!(r.status, 400);
    let r = h.call(&tok, Method::DELETE, &format!("/groups/{group}/members/{carol}/$ref"), None).await;
    assert_eq!(r.status, 204);
    let r = h.get(&tok, &format!("/users/{carol}?$select=assignedLicenses")).await;
    assert!(!r.body["assignedLicenses"].as_array().unwrap().iter().any(|l| l["skuId"] == e3.as_str()));
    // Removing a membership that is already gone is a 404 naming the group.
    let r = h.call(&tok, Method::DELETE, &format!("/groups/{group}/members/{carol}/$ref"), None).await;
    assert_eq!((r.status, r.code()), (404, "Request_ResourceNotFound"));
    assert!(r.message().contains(&group));
}

#[tokio::test]
async fn without_an_exchange_licence_outlook_endpoints_answer_mailbox_not_enabled() {
    let h = Harness::new().await;
    let tok = h.token().await;
    let alice = h.user_id("alice.able@contoso.com").await;
    assert_eq!(h.get(&tok, &format!("/users/{alice}/mailboxSettings")).await.status, 200);
    let e3 = h.sim.tenant(CONTOSO, |t| t.sku_by_part("SPE_E3").unwrap().id.clone()).unwrap();
    let r = h.call(&tok, Method::POST, &format!("/users/{alice}/assignLicense"), Some(json!({"addLicenses": [], "removeLicenses": [e3]}))).await;
    assert_eq!(r.status, 200);
    for path in ["mailboxSettings", "mailFolders/inbox/messageRules", "calendar/calendarPermissions"] {
        let r = h.get(&tok, &format!("/users/{alice}/{path}")).await;
        assert_eq!(
            (r.status, r.code(), r.message()),
            (404, "MailboxNotEnabledForRESTAPI", "The mailbox is either inactive, soft-deleted, or is hosted on-premise."),
            "{path}"
        );
    }
    // An on-premises (hybrid) mailbox and a user who never had one answer the same.
    let ivy = h.user_id("ivy.hybrid@contoso.com").await;
    assert_eq!(h.get(&tok, &format!("/users/{ivy}/mailboxSettings")).await.code(), "MailboxNotEnabledForRESTAPI");
    let frank = h.user_id("frank.nomail@contoso.com").await;
    assert_eq!(h.get(&tok, &format!("/users/{frank}/mailboxSettings")).await.code(), "MailboxNotEnabledForRESTAPI");
    // Removing a licence the user does not hold is refused.
    let r = h.call(&tok, Method::POST, &format!("/users/{alice}/assignLicense"), Some(json!({"addLicenses": [], "removeLicenses": [e3]}))).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn conversion_to_shared_lands_after_a_delay_and_a_licence_removed_first_loses_the_mailbox() {
    let h = Harness::new().await;
    let graph = h.token().await;
    let exo = h.token_for(CONTOSO, APP, EXCHANGE).await;
    let e3 = h.sim.tenant(CONTOSO, |t| t.sku_by_part("SPE_E3").unwrap().id.clone()).unwrap();

    // Patient: convert, wait for Get-Mailbox to say shared, then remove the licence.
    let r = h.exo(&exo, CONTOSO, "Set-Mailbox", json!({"Identity": "jack.delegate@contoso.com", "Type": "Shared"})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let get = json!({"Identity": "jack.delegate@contoso.com"});
    let kind = h.exo(&exo, CONTOSO, "Get-Mailbox", get.clone()).await.body["value"][0]["RecipientTypeDetails"].clone();
    assert_eq!(kind, "UserMailbox", "the change has not landed yet");
    h.sim.advance(Duration::from_secs(61));
    let kind = h.exo(&exo, CONTOSO, "Get-Mailbox", get).await.body["value"][0]["RecipientTypeDetails"].clone();
    assert_eq!(kind, "SharedMailbox");
    let jack = h.user_id("jack.delegate@contoso.com").await;
    h.call(&graph, Method::POST, &format!("/users/{jack}/assignLicense"), Some(json!({"addLicenses": [], "removeLicenses": [e3]}))).await;
    assert_eq!(h.get(&graph, &format!("/users/{jack}/mailboxSettings")).await.status, 200, "a shared mailbox needs no licence");

    // Hasty: remove the licence before the conversion lands (the peers' race).
    let paul = h.user_id("paul.forward@contoso.com").await;
    h.exo(&exo, CONTOSO, "Set-Mailbox", json!({"Identity": "paul.forward@contoso.com", "Type": "Shared"})).await;
    let r = h.call(&graph, Method::POST, &format!("/users/{paul}/assignLicense"), Some(json!({"addLicenses": [], "removeLicenses": [e3]}))).await;
    assert_eq!(r.status, 200);
    h.sim.advance(Duration::from_secs(61));
    assert_eq!(h.get(&graph, &format!("/users/{paul}/mailboxSettings")).await.code(), "MailboxNotEnabledForRESTAPI");
    assert_eq!(h.sim.count("mailbox.conversion_failed", &paul), 1);
    assert_eq!(h.exo(&exo, CONTOSO, "Get-Mailbox", json!({"Identity": "paul.forward@contoso.com"})).await.status, 404);
}

#[tokio::test]
async fn members_without_ref_deletes_the_user_given_user_readwrite_all_and_is_refused_otherwise() {
    let h = Harness::new().await;
    let vpn = h.group_id("VPN Users").await;
    let jack = h.user_id("jack.delegate@contoso.com").await;
    h.sim.set_permission(CONTOSO, APP, offboard_m365_sim::token::Resource::Graph, "User.ReadWrite.All", false).unwrap();
    let narrow = h.token().await;
    let r = h.call(&narrow, Method::DELETE, &format!("/groups/{vpn}/members/{jack}"), None).await;
    assert_eq!((r.status, r.code()), (403, "Authorization_RequestDenied"));
    assert_eq!(h.sim.count("user.deleted", &jack), 0);

    h.sim.set_permission(CONTOSO, APP, offboard_m365_sim::token::Resource::Graph, "User.ReadWrite.All", true).unwrap();
    let broad = h.token().await;
    let r = h.call(&broad, Method::DELETE, &format!("/groups/{vpn}/members/{jack}"), None).await;
    assert_eq!(r.status, 204);
    assert_eq!(h.sim.count("user.deleted", &jack), 1, "the user object itself is gone");
    assert_eq!(h.get(&broad, &format!("/users/{jack}")).await.status, 404);
}

#[tokio::test]
async fn only_the_organiser_can_cancel_and_attendees_see_the_cancellation() {
    let h = Harness::new().await;
    let tok = h.token().await;
    let alice = h.user_id("alice.able@contoso.com").await;
    let mary = h.user_id("mary.manager@contoso.com").await;
    let now = h.sim.clock().wall();
    let window = format!(
        "startDateTime={}&endDateTime={}",
        (now - chrono::Duration::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        (now + chrono::Duration::days(30)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let r = h.get(&tok, &format!("/users/{alice}/calendarView?{window}&$top=50")).await;
    let events = r.body["value"].as_array().unwrap().clone();
    let attendee_copy = events.iter().find(|e| e["subject"] == "Sales all-hands").expect("Alice is invited by Mary");
    assert_eq!(attendee_copy["isOrganizer"], false);
    let r = h
        .call(&tok, Method::POST, &format!("/users/{alice}/events/{}/cancel", attendee_copy["id"].as_str().unwrap()), Some(json!({"Comment": "Leaving"})))
        .await;
    assert_eq!((r.status, r.message()), (400, "Your request can't be completed. You need to be an organizer to cancel a meeting."));

    let own = events.iter().find(|e| e["subject"] == "Weekly pipeline review").unwrap();
    let r =
        h.call(&tok, Method::POST, &format!("/users/{alice}/events/{}/cancel", own["id"].as_str().unwrap()), Some(json!({"Comment": "Alice has left"}))).await;
    assert_eq!(r.status, 202);
    let r = h.get(&tok, &format!("/users/{mary}/calendarView?{window}")).await;
    let copy = r.body["value"].as_array().unwrap().iter().find(|e| e["subject"] == "Weekly pipeline review").cloned().unwrap();
    assert_eq!(copy["isCancelled"], true);
    // Cancelled meetings leave the organiser's calendar: a second cancel is a 404.
    let r = h.call(&tok, Method::POST, &format!("/users/{alice}/events/{}/cancel", own["id"].as_str().unwrap()), Some(json!({}))).await;
    assert_eq!((r.status, r.code()), (404, "ErrorItemNotFound"));
    // The window is required.
    assert_eq!(h.get(&tok, &format!("/users/{alice}/calendarView")).await.code(), "ErrorInvalidParameter");
}

#[tokio::test]
async fn deleted_users_wait_thirty_days_in_the_bin() {
    let h = Harness::new().await;
    let tok = h.token().await;
    let gina = h.user_id("gina.noonedrive@contoso.com").await;
    assert_eq!(h.call(&tok, Method::DELETE, &format!("/users/{gina}"), None).await.status, 204);
    assert_eq!(h.get(&tok, &format!("/users/{gina}")).await.code(), "Request_ResourceNotFound");
    let r = h.get(&tok, &format!("/directory/deletedItems/{gina}")).await;
    assert_eq!(r.status, 200);
    assert!(r.body["deletedDateTime"].is_string());
    assert_eq!(h.call(&tok, Method::POST, &format!("/directory/deletedItems/{gina}/restore"), None).await.status, 200);
    assert_eq!(h.get(&tok, &format!("/users/{gina}")).await.status, 200);

    h.call(&tok, Method::DELETE, &format!("/users/{gina}"), None).await;
    h.sim.advance(Duration::from_secs(29 * 86_400));
    // Tokens live an hour: a month later the old one is refused.
    assert_eq!(h.get(&tok, &format!("/directory/deletedItems/{gina}")).await.message(), "Lifetime validation failed, the token is expired.");
    let tok = h.token().await;
    assert_eq!(h.get(&tok, &format!("/directory/deletedItems/{gina}")).await.status, 200, "still restorable on day 29");
    h.sim.advance(Duration::from_secs(2 * 86_400));
    let tok = h.token().await;
    assert_eq!(h.get(&tok, &format!("/directory/deletedItems/{gina}")).await.status, 404);
    assert_eq!(h.sim.count("user.purged", &gina), 1);
}

#[tokio::test]
async fn authentication_methods_have_typed_deletes_fixed_ids_and_an_undeletable_password() {
    let h = Harness::new().await;
    let tok = h.token().await;
    let kim = h.user_id("kim.methods@contoso.com").await;
    let r = h.get(&tok, &format!("/users/{kim}/authentication/methods")).await;
    let methods = r.body["value"].as_array().unwrap().clone();
    assert_eq!(methods.len(), 12, "password plus eleven other methods");
    let ids: Vec<&str> = methods.iter().map(|m| m["id"].as_str().unwrap()).collect();
    for fixed in [
        "28c10230-6103-485e-b985-444c60001490",
        "3179e48a-750b-4051-897c-87b9720928f7",
        "b6332ec1-7057-4abe-9331-3d72feddfe41",
        "e37fc753-ff3b-4958-9484-eaa9425c82bc",
        "3ddfcfc8-9383-446f-83cc-3ab9be4be18f",
    ] {
        assert!(ids.contains(&fixed), "{fixed}");
    }
    let pw = "28c10230-6103-485e-b985-444c60001490";
    assert_eq!(h.call(&tok, Method::DELETE, &format!("/users/{kim}/authentication/passwordMethods/{pw}"), None).await.status, 405);
    assert_eq!(h.call(&tok, Method::DELETE, &format!("/users/{kim}/authentication/methods/{pw}"), None).await.status, 405);
    // A typed path must match the method's type.
    let phone = "3179e48a-750b-4051-897c-87b9720928f7";
    assert_eq!(h.call(&tok, Method::DELETE, &format!("/users/{kim}/authentication/emailMethods/{phone}"), None).await.status, 404);
    for m in &methods {
        let ty = m["@odata.type"].as_str().unwrap().trim_start_matches("#microsoft.graph.");
        let collection = match ty {
            "passwordAuthenticationMethod" => continue,
            "phoneAuthenticationMethod" => "phoneMethods",
            "emailAuthenticationMethod" => "emailMethods",
            "microsoftAuthenticatorAuthenticationMethod" => "microsoftAuthenticatorMethods",
            "fido2AuthenticationMethod" => "fido2Methods",
            "softwareOathAuthenticationMethod" => "softwareOathMethods",
            "windowsHelloForBusinessAuthenticationMethod" => "windowsHelloForBusinessMethods",
            "temporaryAccessPassAuthenticationMethod" => "temporaryAccessPassMethods",
            "platformCredentialAuthenticationMethod" => "platformCredentialMethods",
            _ => "externalAuthenticationMethods",
        };
        let r = h.call(&tok, Method::DELETE, &format!("/users/{kim}/authentication/{collection}/{}", m["id"].as_str().unwrap()), None).await;
        assert_eq!(r.status, 204, "{collection}");
    }
    let left = h.get(&tok, &format!("/users/{kim}/authentication/methods")).await;
    assert_eq!(left.body["value"].as_array().unwrap().len(), 1, "only the password remains");
    assert_eq!(h.sim.count("auth_method.deleted", &kim), 11);
}

#[tokio::test]
async fn paging_select_search_and_errors_follow_graph() {
    let h = Harness::new().await;
    let tok = h.token().await;
    let mut url = "/users?$top=7&$select=id,userPrincipalName".to_string();
    let mut seen = Vec::new();
    loop {
        let r = h.get(&tok, &url).await;
        assert_eq!(r.status, 200);
        for u in r.body["value"].as_array().unwrap() {
            assert!(u.get("displayName").is_none(), "$select applies on every page");
            seen.push(u["id"].as_str().unwrap().to_string());
        }
        match r.body["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(!next.contains("skip=") && next.contains("$skiptoken=") || next.contains("%24skiptoken="));
                url = next.to_string();
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 50);
    seen.dedup();
    assert_eq!(seen.len(), 50);
    assert_eq!(h.get(&tok, "/users?$top=1000").await.message(), "Invalid page size specified: '1000'. Must be between 1 and 999 inclusive.");
    assert_eq!(h.get(&tok, "/users?$top=999").await.status, 200);
    let r = h.get(&tok, "/users/alice.able@contoso.com?$select=id,nonsense").await;
    assert_eq!((r.status, r.message()), (400, "Could not find a property named 'nonsense' on type 'Microsoft.DirectoryServices.User'."));
    let r = h.get(&tok, "/users/alice.able@contoso.com").await;
    assert!(r.body.get("accountEnabled").is_none(), "only the default properties without $select");
    assert_eq!(r.body["userPrincipalName"], "alice.able@contoso.com");
    let r = h.get(&tok, "/users?$search=\"displayName:alice\"").await;
    assert_eq!((r.status, r.code()), (400, "Request_UnsupportedQuery"));
    assert_eq!(r.message(), "Request with $search query parameter only works through MSGraph with a special request header: 'ConsistencyLevel: eventual'");
    let r = h
        .http
        .get(format!("{}/v1.0/users?$search=\"displayName:alice\"", h.sim.urls().graph))
        .bearer_auth(&tok)
        .header("ConsistencyLevel", "eventual")
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["value"].as_array().unwrap().len(), 1);
    let r = h.get(&tok, "/users?$filter=startswith(displayName,'Mary')").await;
    assert_eq!(r.body["value"][0]["userPrincipalName"], "mary.manager@contoso.com");
    assert_eq!(h.get(&tok, "/users?$filter=endswith(mail,'contoso.com')").await.code(), "Request_UnsupportedQuery");
    let r = h.get(&tok, "/users/nobody@contoso.com").await;
    assert_eq!(
        (r.status, r.message()),
        (404, "Resource 'nobody@contoso.com' does not exist or one of its queried reference-property objects are not present.")
    );
    assert!(r.header("request-id").is_some());
    assert_eq!(r.body["error"]["innerError"]["request-id"].as_str(), r.header("request-id"));
    assert_eq!(h.get(&tok, "/users/alice.able@contoso.com/nonsense").await.message(), "Resource not found for the segment 'nonsense'.");
    let r = h.get(&tok, "/users/alice.able@contoso.com/memberOf/microsoft.graph.group?$select=id,displayName,groupTypes,mailEnabled,securityEnabled,onPremisesSyncEnabled,membershipRule,isAssignableToRole,assignedLicenses").await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 7);
    let dave = h.user_id("dave.admin@contoso.com").await;
    let r = h.get(&tok, &format!("/users/{dave}/memberOf")).await;
    assert!(
        r.body["value"].as_array().unwrap().iter().any(|o| o["@odata.type"] == "#microsoft.graph.directoryRole"),
        "memberOf without the cast includes roles"
    );
}

#[tokio::test]
async fn users_delta_reports_changes_and_removals_and_expires_after_seven_days() {
    let h = Harness::new().await;
    let tok = h.token().await;
    let mut url = "/users/delta?$select=id,displayName,accountEnabled".to_string();
    let mut total = 0;
    let delta_link = loop {
        let r = h.get(&tok, &url).await;
        total += r.body["value"].as_array().unwrap().len();
        assert!(!(r.body.get("@odata.nextLink").is_some() && r.body.get("@odata.deltaLink").is_some()));
        if let Some(d) = r.body["@odata.deltaLink"].as_str() {
            break d.to_string();
        }
        url = r.body["@odata.nextLink"].as_str().unwrap().to_string();
    };
    assert_eq!(total, 50);
    let alice = h.user_id("alice.able@contoso.com").await;
    let gina = h.user_id("gina.noonedrive@contoso.com").await;
    h.call(&tok, Method::PATCH, &format!("/users/{alice}"), Some(json!({"accountEnabled": false}))).await;
    h.call(&tok, Method::DELETE, &format!("/users/{gina}"), None).await;
    let r = h.get(&tok, &delta_link).await;
    let items = r.body["value"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().any(|i| i["id"] == alice.as_str() && i["accountEnabled"] == false));
    assert!(items.iter().any(|i| i["id"] == gina.as_str() && i["@removed"]["reason"] == "changed"));
    let next = r.body["@odata.deltaLink"].as_str().unwrap().to_string();
    h.sim.advance(Duration::from_secs(8 * 86_400));
    let tok = h.token().await;
    let r = h.get(&tok, &next).await;
    assert_eq!((r.status, r.code()), (400, "syncStateNotFound"));
}

#[tokio::test]
async fn onedrive_devices_and_intune_behave_like_the_services() {
    let h = Harness::new().await;
    let tok = h.token().await;
    let gina = h.user_id("gina.noonedrive@contoso.com").await;
    let r = h.get(&tok, &format!("/users/{gina}/drive")).await;
    assert_eq!((r.status, r.code(), r.message()), (404, "ResourceNotFound", "User's mysite not found."));
    let alice = h.user_id("alice.able@contoso.com").await;
    let drive = h.get(&tok, &format!("/users/{alice}/drive")).await.body;
    let root = h.get(&tok, &format!("/drives/{}/root?$select=id,sharepointIds", drive["id"].as_str().unwrap())).await.body;
    assert!(root["sharepointIds"]["siteUrl"].as_str().unwrap().contains("-my.sharepoint.com/personal/"));
    let invite = format!("/drives/{}/items/{}/invite", drive["id"].as_str().unwrap(), root["id"].as_str().unwrap());
    let r = h.call(&tok, Method::POST, &invite, Some(json!({"roles": ["write"]}))).await;
    assert_eq!(r.status, 400, "recipients is required");
    let r = h
        .call(
            &tok,
            Method::POST,
            &invite,
            Some(json!({"recipients": [{"email": "mary.manager@contoso.com"}], "roles": ["write"], "requireSignIn": true, "sendInvitation": false})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["value"][0]["roles"][0], "write");

    let devices = h.get(&tok, &format!("/users/{alice}/registeredDevices")).await.body["value"].as_array().unwrap().clone();
    assert_eq!(devices.len(), 3);
    let home = devices.iter().find(|d| d["displayName"] == "Alice home PC").unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(h.call(&tok, Method::PATCH, &format!("/devices/{home}"), Some(json!({"accountEnabled": false}))).await.status, 204);
    assert_eq!(h.get(&tok, &format!("/devices/{home}")).await.body["accountEnabled"], false);

    let managed = h.get(&tok, &format!("/users/{alice}/managedDevices")).await.body["value"].as_array().unwrap().clone();
    assert_eq!(managed.len(), 2, "the home PC is registered, not enrolled");
    let laptop = managed.iter().find(|d| d["deviceName"] == "LT-ALICE-01").unwrap()["id"].as_str().unwrap().to_string();
    let r = h.call(&tok, Method::POST, &format!("/deviceManagement/managedDevices/{laptop}/wipe"), Some(json!({"obliterationBehavior": "always"}))).await;
    assert_eq!(r.status, 400, "obliterationBehavior is not a v1.0 parameter");
    let r = h
        .call(&tok, Method::POST, &format!("/deviceManagement/managedDevices/{laptop}/wipe"), Some(json!({"keepEnrollmentData": false, "keepUserData": false})))
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(h.get(&tok, &format!("/deviceManagement/managedDevices/{laptop}")).await.body["managementState"], "wipePending");
    h.call(&tok, Method::POST, &format!("/deviceManagement/managedDevices/{laptop}/wipe"), None).await;
    assert_eq!(h.sim.count("managed_device.wiped", &laptop), 2, "the ledger counts every wipe sent");
}

#[tokio::test]
async fn mailbox_settings_rules_and_calendar_permissions() {
    let h = Harness::new().await;
    let tok = h.token().await;
    let alice = h.user_id("alice.able@contoso.com").await;
    let r = h.call(&tok, Method::PATCH, &format!("/users/{alice}/mailboxSettings"), Some(json!({"forwardingSmtpAddress": "x@y.example"}))).await;
    assert_eq!((r.status, r.code()), (400, "RequestBodyRead"), "Graph has no forwarding setting");
    let r = h.call(&tok, Method::PATCH, &format!("/users/{alice}/mailboxSettings"), Some(json!({"automaticRepliesSetting": {"status": "sometimes"}}))).await;
    assert_eq!(r.status, 400);
    let r = h
        .call(&tok, Method::PATCH, &format!("/users/{alice}/mailboxSettings"), Some(json!({"automaticRepliesSetting": {"status": "alwaysEnabled", "externalAudience": "all", "internalReplyMessage": "Alice has left; contact Mary.", "externalReplyMessage": "Alice has left Contoso."}})))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["automaticRepliesSetting"]["status"], "alwaysEnabled");
    let rules = h.get(&tok, &format!("/users/{alice}/mailFolders/inbox/messageRules")).await.body["value"].as_array().unwrap().clone();
    let fwd = rules.iter().find(|r| r["actions"]["forwardTo"].is_array()).unwrap();
    assert_eq!(h.call(&tok, Method::DELETE, &format!("/users/{alice}/mailFolders/inbox/messageRules/{}", fwd["id"].as_str().unwrap()), None).await.status, 204);
    let perms = h.get(&tok, &format!("/users/{alice}/calendar/calendarPermissions")).await.body["value"].as_array().unwrap().clone();
    let default = perms.iter().find(|p| p["isRemovable"] == false).unwrap();
    assert_eq!(
        h.call(&tok, Method::DELETE, &format!("/users/{alice}/calendar/calendarPermissions/{}", default["id"].as_str().unwrap()), None).await.status,
        400
    );
    let jack = perms.iter().find(|p| p["emailAddress"]["address"] == "jack.delegate@contoso.com").unwrap();
    assert_eq!(h.call(&tok, Method::DELETE, &format!("/users/{alice}/calendar/calendarPermissions/{}", jack["id"].as_str().unwrap()), None).await.status, 204);
    assert_eq!(h.kinds(&alice), vec!["mailbox.auto_reply_set", "mailbox.rule_deleted", "calendar.permission_removed"]);
}

#[tokio::test]
async fn guests_and_apostrophes_are_addressed_by_their_percent_encoded_upn() {
    let h = Harness::new().await;
    let tok = h.token().await;
    for (wire, upn) in [
        ("leo.partner_fabrikam.example%23EXT%23@contoso.onmicrosoft.com", "leo.partner_fabrikam.example#EXT#@contoso.onmicrosoft.com"),
        ("sean.o%27brien@contoso.com", "sean.o'brien@contoso.com"),
    ] {
        let r = h.get(&tok, &format!("/users/{wire}?$select=id,userPrincipalName")).await;
        assert_eq!(r.status, 200, "{upn}: {:?}", r.body);
        assert_eq!(r.body["userPrincipalName"], upn);
        // The same inside a batch.
        let batch = json!({ "requests": [{ "id": "1", "method": "GET", "url": format!("/users/{wire}/manager") }] });
        let r = h.call(&tok, Method::POST, "/$batch", Some(batch)).await;
        let status = r.body["responses"][0]["status"].as_u64().unwrap();
        assert!(
            status == 200 || status == 404 && r.body["responses"][0]["body"]["error"]["message"].as_str().unwrap().contains("manager"),
            "{upn}: {:?}",
            r.body
        );
    }
    // An unencoded `#` starts the fragment: Graph never sees the rest.
    let batch = json!({ "requests": [{ "id": "1", "method": "GET", "url": "/users/leo.partner_fabrikam.example#EXT#@contoso.onmicrosoft.com" }] });
    let r = h.call(&tok, Method::POST, "/$batch", Some(batch)).await;
    assert_eq!(r.body["responses"][0]["status"], 404, "{:?}", r.body);
}

#[tokio::test]
async fn ownership_moves_through_graph_for_groups_and_through_exchange_for_distribution_lists() {
    let h = Harness::new().await;
    let tok = h.token().await;
    let oscar = h.user_id("oscar.owner@contoso.com").await;
    let mary = h.user_id("mary.manager@contoso.com").await;
    let owned = h.get(&tok, &format!("/users/{oscar}/ownedObjects/microsoft.graph.group?$select=id,displayName,resourceProvisioningOptions")).await;
    let names: Vec<&str> = owned.body["value"].as_array().unwrap().iter().map(|g| g["displayName"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(owned.body["value"].as_array().unwrap().iter().any(|g| g["resourceProvisioningOptions"] == json!(["Team"])));
    let team = h.group_id("Product Team").await;
    // The only owner of a Microsoft 365 group cannot be removed.
    let r = h.call(&tok, Method::DELETE, &format!("/groups/{team}/owners/{oscar}/$ref"), None).await;
    assert_eq!((r.status, r.message()), (400, "The group must have at least one owner, hence this owner cannot be removed."));
    let add = json!({ "@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{mary}") });
    assert_eq!(h.call(&tok, Method::POST, &format!("/groups/{team}/owners/$ref"), Some(add.clone())).await.status, 204);
    assert_eq!(h.call(&tok, Method::DELETE, &format!("/groups/{team}/owners/{oscar}/$ref"), None).await.status, 204);
    // A distribution list's owners are Exchange's ManagedBy.
    let dl = h.group_id("Product Announcements").await;
    let r = h.call(&tok, Method::POST, &format!("/groups/{dl}/owners/$ref"), Some(add)).await;
    assert_eq!((r.status, r.message()), (400, "Cannot Update a mail-enabled security groups and or distribution list."));
    let exo = h.token_for(CONTOSO, APP, EXCHANGE).await;
    let managed = |op: &str, who: &str| json!({"Identity": "Product Announcements", "ManagedBy": {"@odata.type": "#Exchange.GenericHashTable", op: who}});
    let r = h.exo(&exo, CONTOSO, "Set-DistributionGroup", managed("remove", "oscar.owner@contoso.com")).await;
    assert_eq!(r.status, 400, "a list keeps at least one owner: {:?}", r.body);
    assert_eq!(h.exo(&exo, CONTOSO, "Set-DistributionGroup", managed("add", "mary.manager@contoso.com")).await.status, 200);
    assert_eq!(h.exo(&exo, CONTOSO, "Set-DistributionGroup", managed("remove", "oscar.owner@contoso.com")).await.status, 200);
    let r = h.exo(&exo, CONTOSO, "Get-DistributionGroup", json!({"Identity": "Product Announcements"})).await;
    assert_eq!(r.body["value"][0]["ManagedBy"], json!(["mary.manager@contoso.com"]), "{:?}", r.body);
    assert!(h.get(&tok, &format!("/users/{oscar}/ownedObjects/microsoft.graph.group")).await.body["value"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_channels_files_folder_takes_uploads_by_path() {
    let h = Harness::new().await;
    let tok = h.token().await;
    let team = h.group_id("IT Operations").await;
    let channel = "19%3Ait-approvals%40thread.tacv2";
    let folder = h.get(&tok, &format!("/teams/{team}/channels/{channel}/filesFolder")).await;
    assert_eq!(folder.status, 200, "{:?}", folder.body);
    assert_eq!(folder.body["name"], "IT Approvals");
    let (drive, item) = (folder.body["parentReference"]["driveId"].as_str().unwrap().to_string(), folder.body["id"].as_str().unwrap().to_string());

    // Unknown channels and groups without a team have no folder.
    assert_eq!(h.get(&tok, &format!("/teams/{team}/channels/19%3Anope%40thread.tacv2/filesFolder")).await.status, 404);
    let vpn = h.group_id("VPN Users").await;
    assert_eq!(h.get(&tok, &format!("/teams/{vpn}/channels/{channel}/filesFolder")).await.status, 404);

    let put = |token: String, name: &'static str, bytes: &'static [u8]| {
        let url = format!("{}/v1.0/drives/{drive}/items/{item}:/{name}:/content", h.sim.urls().graph);
        async move { reqwest::Client::new().put(url).bearer_auth(token).header("content-type", "application/pdf").body(bytes).send().await.unwrap() }
    };
    let first = put(tok.clone(), "ob-1.pdf", b"%PDF-1.7 first").await;
    assert_eq!(first.status(), 201);
    let first: serde_json::Value = first.json().await.unwrap();
    assert_eq!((first["name"].as_str(), first["size"].as_u64()), (Some("ob-1.pdf"), Some(14)));
    assert!(first["webUrl"].as_str().unwrap().ends_with("/sites/ITOperations/Shared%20Documents/IT%20Approvals/ob-1.pdf"), "{first}");
    let again = put(tok.clone(), "ob-1.pdf", b"%PDF-1.7 second").await;
    assert_eq!(again.status(), 200, "the same name replaces the file");
    let stored = h.sim.tenant(CONTOSO, |t| t.groups[&team].site.as_ref().unwrap().channels[1].files["ob-1.pdf"].bytes.clone()).unwrap();
    assert_eq!(stored, b"%PDF-1.7 second");
    assert_eq!(put(tok.clone(), "a:b.pdf", b"x").await.status(), 400, "SharePoint refuses a colon in a name");

    // Reading the folder is not writing into it.
    let reader = h.token_for(CONTOSO, READER, GRAPH).await;
    assert_eq!(put(reader, "ob-2.pdf", b"x").await.status(), 403);
    assert_eq!(h.kinds(first["id"].as_str().unwrap()), ["drive.file_uploaded", "drive.file_uploaded"]);
}
