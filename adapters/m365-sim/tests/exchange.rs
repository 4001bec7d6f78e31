//! Exchange Online's InvokeCommand surface: auth, routing hint, parameter validation, the
//! GenericHashTable envelope with warnings, Exchange-style errors and the batch.

mod common;

use common::*;
use offboard_m365_sim::SimConfig;
use offboard_m365_sim::token::Resource;
use serde_json::{Value, json};

#[tokio::test]
async fn invoke_command_answers_in_the_generic_hash_table_envelope_with_warnings() {
    let h = Harness::new().await;
    let tok = h.token_for(CONTOSO, APP, EXCHANGE).await;
    let r = h.exo(&tok, CONTOSO, "Get-Mailbox", json!({"Identity": "alice.able@contoso.com"})).await;
    assert_eq!(r.status, 200);
    assert!(r.body["@odata.context"].as_str().unwrap().ends_with("$metadata#Collection(Exchange.GenericHashTable)"));
    assert_eq!(r.body["adminapi.warnings@odata.type"], "#Collection(String)");
    assert_eq!(r.body["value"][0]["ForwardingSmtpAddress"], "smtp:alice.personal@gmail.example");
    let hide = json!({"Identity": "alice.able@contoso.com", "HiddenFromAddressListsEnabled": true});
    assert_eq!(h.exo(&tok, CONTOSO, "Set-Mailbox", hide.clone()).await.body["@adminapi.warnings"], json!([]));
    let again = h.exo(&tok, CONTOSO, "Set-Mailbox", hide).await;
    assert!(again.body["@adminapi.warnings"][0].as_str().unwrap().contains("no settings"), "a no-op says so in a warning");
    let clear = json!({"Identity": "alice.able@contoso.com", "ForwardingSmtpAddress": null, "ForwardingAddress": null, "DeliverToMailboxAndForward": false});
    assert_eq!(h.exo(&tok, CONTOSO, "Set-Mailbox", clear).await.status, 200);
    let mb = h.exo(&tok, CONTOSO, "Get-Mailbox", json!({"Identity": "alice.able@contoso.com"})).await;
    assert!(mb.body["value"][0]["ForwardingSmtpAddress"].is_null());
    assert_eq!(mb.body["value"][0]["HiddenFromAddressListsEnabled"], true);
    let alice = h.user_id("alice.able@contoso.com").await;
    assert_eq!(h.kinds(&alice), vec!["mailbox.hidden", "mailbox.forwarding_cleared"]);
}

#[tokio::test]
async fn parameters_are_validated_per_cmdlet_and_errors_carry_exchange_details() {
    let h = Harness::new().await;
    let tok = h.token_for(CONTOSO, APP, EXCHANGE).await;
    let r = h.exo(&tok, CONTOSO, "Set-Mailbox", json!({"Identity": "alice.able@contoso.com", "ForwardTo": "x@y.example"})).await;
    assert_eq!(r.status, 400);
    let detail = r.body["error"]["details"][0]["message"].as_str().unwrap();
    assert!(detail.contains("AmbiguousParameterSetException") && detail.contains("'ForwardTo'"), "{detail}");
    let r = h.exo(&tok, CONTOSO, "Remove-MobileDevice", json!({})).await;
    assert!(r.body["error"]["innererror"]["message"].as_str().unwrap().contains("missing mandatory parameters: Identity"));
    let r = h.exo(&tok, CONTOSO, "Get-Mailbox", json!({"Identity": "ghost@contoso.com"})).await;
    assert_eq!((r.status, r.code()), (404, "NotFound"));
    assert!(
        r.body["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("ManagementObjectNotFoundException|The operation couldn't be performed because object 'ghost@contoso.com' couldn't be found")
    );
    // Enum values match by prefix, as in Exchange.
    let r = h.exo(&tok, CONTOSO, "Set-Mailbox", json!({"Identity": "paul.forward@contoso.com", "Type": "Sha"})).await;
    assert_eq!(r.status, 200);
    let r = h.exo(&tok, CONTOSO, "Set-Mailbox", json!({"Identity": "paul.forward@contoso.com", "Type": "Nonsense"})).await;
    assert_eq!(r.status, 400);
    let r = h.exo(&tok, CONTOSO, "Invoke-Anything", json!({})).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn the_routing_hint_is_required() {
    let h = Harness::new().await;
    let tok = h.token_for(CONTOSO, APP, EXCHANGE).await;
    let r = h
        .http
        .post(format!("{}/adminapi/beta/{CONTOSO}/InvokeCommand", h.sim.urls().exchange))
        .bearer_auth(&tok)
        .json(&json!({"CmdletInput": {"CmdletName": "Get-Mailbox", "Parameters": {}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "ErrorIncorrectRoutingHint");
}

#[tokio::test]
async fn exchange_needs_the_app_role_and_a_directory_role() {
    let h = Harness::with(SimConfig { manual_clock: true, exchange_binary_403: true, ..SimConfig::default() }).await;
    let graph = h.token().await;
    assert_eq!(h.exo(&graph, CONTOSO, "Get-Mailbox", json!({})).await.status, 401, "a Graph token is the wrong audience");
    h.sim.set_entra_role(CONTOSO, APP, "Exchange Administrator", false).unwrap();
    let app_role_only = h.token_for(CONTOSO, APP, EXCHANGE).await;
    let r = h
        .http
        .post(format!("{}/adminapi/beta/{CONTOSO}/InvokeCommand", h.sim.urls().exchange))
        .bearer_auth(&app_role_only)
        .header("X-AnchorMailbox", "UPN:alice.able@contoso.com")
        .json(&json!({"CmdletInput": {"CmdletName": "Get-Mailbox", "Parameters": {}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.bytes().await.unwrap().iter().all(|b| *b == 0), "Exchange's 403 body can be NUL bytes");
    h.sim.set_permission(CONTOSO, APP, Resource::Exchange, "Exchange.ManageAsApp", false).unwrap();
    let neither = h.token_for(CONTOSO, APP, EXCHANGE).await;
    assert_eq!(h.exo(&neither, CONTOSO, "Get-Mailbox", json!({})).await.status, 401);
    h.sim.set_permission(CONTOSO, APP, Resource::Exchange, "Exchange.ManageAsApp", true).unwrap();
    h.sim.set_entra_role(CONTOSO, APP, "Exchange Administrator", true).unwrap();
    let both = h.token_for(CONTOSO, APP, EXCHANGE).await;
    assert_eq!(h.exo(&both, CONTOSO, "Get-Mailbox", json!({})).await.status, 200);
}

#[tokio::test]
async fn meetings_rules_devices_and_permissions_through_exchange() {
    let h = Harness::new().await;
    let tok = h.token_for(CONTOSO, APP, EXCHANGE).await;
    let alice = h.user_id("alice.able@contoso.com").await;
    let preview = h
        .exo(
            &tok,
            CONTOSO,
            "Remove-CalendarEvents",
            json!({"Identity": "alice.able@contoso.com", "CancelOrganizedMeetings": true, "QueryWindowInDays": 730, "PreviewOnly": true, "Confirm": false}),
        )
        .await;
    assert_eq!(preview.body["value"].as_array().unwrap().len(), 2, "meetings with attendees only; focus time stays");
    assert_eq!(h.sim.count("event.cancelled", &alice), 0);
    h.exo(
        &tok,
        CONTOSO,
        "Remove-CalendarEvents",
        json!({"Identity": "alice.able@contoso.com", "CancelOrganizedMeetings": true, "QueryWindowInDays": 730, "Confirm": false}),
    )
    .await;
    assert_eq!(h.sim.count("event.cancelled", &alice), 2);

    let rules = h.exo(&tok, CONTOSO, "Get-InboxRule", json!({"Mailbox": "alice.able@contoso.com", "IncludeHidden": true})).await;
    let names: Vec<&str> = rules.body["value"].as_array().unwrap().iter().map(|r| r["Name"].as_str().unwrap()).collect();
    assert!(names.contains(&"Junk E-Mail Rule"), "hidden system rules show with IncludeHidden");
    let fwd = rules.body["value"].as_array().unwrap().iter().find(|r| r["Name"] == "Copy invoices home").unwrap()["Identity"].as_str().unwrap().to_string();
    assert_eq!(h.exo(&tok, CONTOSO, "Remove-InboxRule", json!({"Identity": fwd, "Confirm": false})).await.status, 200);

    let devices = h.exo(&tok, CONTOSO, "Get-MobileDevice", json!({"Mailbox": "alice.able@contoso.com"})).await;
    let id = devices.body["value"][0]["Identity"].as_str().unwrap().to_string();
    assert_eq!(h.exo(&tok, CONTOSO, "Remove-MobileDevice", json!({"Identity": id, "Confirm": false})).await.status, 200);
    assert_eq!(h.exo(&tok, CONTOSO, "Remove-MobileDevice", json!({"Identity": id})).await.status, 404);

    let r = h
        .exo(
            &tok,
            CONTOSO,
            "Remove-MailboxPermission",
            json!({"Identity": "info@contoso.com", "User": "carol.group@contoso.com", "AccessRights": ["FullAccess"], "Confirm": false}),
        )
        .await;
    assert!(r.body["@adminapi.warnings"][0].as_str().unwrap().contains("doesn't exist"));
    let r = h
        .exo(
            &tok,
            CONTOSO,
            "Remove-RecipientPermission",
            json!({"Identity": "info@contoso.com", "Trustee": "alice.able@contoso.com", "AccessRights": ["SendAs"], "Confirm": false}),
        )
        .await;
    assert_eq!(r.body["@adminapi.warnings"], json!([]));
    let r = h
        .exo(
            &tok,
            CONTOSO,
            "Remove-MailboxFolderPermission",
            json!({"Identity": "alice.able@contoso.com:\\Calendar", "User": "mary.manager@contoso.com", "Confirm": false}),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = h
        .exo(&tok, CONTOSO, "Remove-MailboxFolderPermission", json!({"Identity": "alice.able@contoso.com:\\Calendar", "User": "mary.manager@contoso.com"}))
        .await;
    assert_eq!(r.status, 404);
    let size = h.exo(&tok, CONTOSO, "Get-MailboxStatistics", json!({"Identity": "hank.large@contoso.com"})).await;
    assert!(size.body["value"][0]["TotalItemSize"].as_str().unwrap().contains("(62,000,000,000 bytes)"));
}

#[tokio::test]
async fn the_batch_stops_at_the_first_error_unless_told_to_continue() {
    let h = Harness::new().await;
    let tok = h.token_for(CONTOSO, APP, EXCHANGE).await;
    let url = format!("{}/adminapi/beta/{CONTOSO}/InvokeCommand", h.sim.urls().exchange);
    let item = |id: &str, identity: &str| json!({"id": id, "method": "POST", "url": url, "headers": {"X-AnchorMailbox": format!("UPN:{identity}")}, "body": {"CmdletInput": {"CmdletName": "Get-Mailbox", "Parameters": {"Identity": identity}}}});
    let body = json!({"requests": [item("1", "alice.able@contoso.com"), item("2", "ghost@contoso.com"), item("3", "mary.manager@contoso.com")]});
    let send = |prefer: bool| {
        let mut req = h.http.post(format!("{}/adminapi/beta/{CONTOSO}/$batch", h.sim.urls().exchange)).bearer_auth(&tok).json(&body);
        if prefer {
            req = req.header("Prefer", "odata.continue-on-error");
        }
        req.send()
    };
    let strict: Value = send(false).await.unwrap().json().await.unwrap();
    assert_eq!(strict["responses"].as_array().unwrap().len(), 2);
    let lenient: Value = send(true).await.unwrap().json().await.unwrap();
    let statuses: Vec<u64> = lenient["responses"].as_array().unwrap().iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, vec![200, 404, 200]);
}

#[tokio::test]
async fn the_documented_v2_endpoints_accept_only_their_cmdlets() {
    let h = Harness::new().await;
    h.sim.set_permission(CONTOSO, APP, Resource::Exchange, "Exchange.ManageAsAppV2", true).unwrap();
    let tok = h.token_for(CONTOSO, APP, EXCHANGE).await;
    let call = |endpoint: &str, cmdlet: &str, params: Value| {
        h.http
            .post(format!("{}/adminapi/v2.0/{CONTOSO}/{endpoint}", h.sim.urls().exchange))
            .bearer_auth(&tok)
            .header("X-AnchorMailbox", "UPN:mary.manager@contoso.com")
            .json(&json!({"CmdletInput": {"CmdletName": cmdlet, "Parameters": params}}))
            .send()
    };
    let ok = call("Mailbox", "Set-Mailbox", json!({"Identity": "mary.manager@contoso.com", "GrantSendOnBehalfTo": {"@odata.type": "#Exchange.GenericHashTable", "remove": "jack.delegate@contoso.com"}})).await.unwrap();
    assert_eq!(ok.status(), 200);
    let no = call("Mailbox", "Set-Mailbox", json!({"Identity": "mary.manager@contoso.com", "HiddenFromAddressListsEnabled": true})).await.unwrap();
    assert_eq!(no.status(), 400, "v2.0 Set-Mailbox is limited to GrantSendOnBehalfTo");
    let folder = call("MailboxFolderPermission", "Get-MailboxFolderPermission", json!({"Identity": "alice.able@contoso.com:\\Calendar"})).await.unwrap();
    assert_eq!(folder.status(), 200);
    let mary = h.user_id("mary.manager@contoso.com").await;
    assert_eq!(h.sim.count("mailbox.send_on_behalf_changed", &mary), 1);
}

#[tokio::test]
async fn a_tenants_hidden_exchange_limit_answers_429_and_counts_only_calls_that_knew_better() {
    let mut scenario = offboard_m365_sim::Scenario::contoso();
    scenario.tenants[0].exchange_calls_per_s = Some(3.0);
    scenario.tenants[0].conversion_delay_s = Some(120.0);
    let h = Harness::scenario(&scenario, SimConfig { manual_clock: true, ..SimConfig::default() }).await;
    let tok = h.token_for(CONTOSO, APP, EXCHANGE).await;
    let get = json!({"Identity": "alice.able@contoso.com"});
    for _ in 0..3 {
        assert_eq!(h.exo(&tok, CONTOSO, "Get-Mailbox", get.clone()).await.status, 200, "a second's worth of burst");
    }
    let over = h.exo(&tok, CONTOSO, "Get-Mailbox", get.clone()).await;
    assert_eq!((over.status, over.code()), (429, "TooManyRequests"));
    let wait: f64 = over.header("retry-after").unwrap().parse().unwrap();
    assert!((0.3..=0.34).contains(&wait), "one call's worth at 3/s: {wait}");
    assert_eq!(h.sim.stats().early_retries, 0, "the first 429 is not early");
    // Sent as the 429 was answered: throttled, but its client could not have known.
    assert_eq!(h.exo(&tok, CONTOSO, "Get-Mailbox", get.clone()).await.status, 429);
    assert_eq!((h.sim.stats().exchange_throttled, h.sim.stats().early_retries), (2, 0));
    // Sent after that 429 reached its client and before its Retry-After: early.
    h.sim.advance(std::time::Duration::from_millis(5));
    assert_eq!(h.exo(&tok, CONTOSO, "Get-Mailbox", get.clone()).await.status, 429);
    let stats = h.sim.stats();
    assert_eq!((stats.exchange_throttled, stats.early_retries), (3, 1));
    h.sim.advance(std::time::Duration::from_millis(340));
    assert_eq!(h.exo(&tok, CONTOSO, "Get-Mailbox", get).await.status, 200, "after the wait, admitted");

    // The scenario's conversion delay, not the simulator's default minute.
    h.sim.advance(std::time::Duration::from_secs(2));
    let convert = json!({"Identity": "alice.able@contoso.com", "Type": "Shared"});
    assert_eq!(h.exo(&tok, CONTOSO, "Set-Mailbox", convert).await.status, 200);
    let kind = |r: Resp| r.body["value"][0]["RecipientTypeDetails"].as_str().unwrap().to_string();
    h.sim.advance(std::time::Duration::from_secs(90));
    assert_eq!(kind(h.exo(&tok, CONTOSO, "Get-Mailbox", json!({"Identity": "alice.able@contoso.com"})).await), "UserMailbox");
    h.sim.advance(std::time::Duration::from_secs(31));
    assert_eq!(kind(h.exo(&tok, CONTOSO, "Get-Mailbox", json!({"Identity": "alice.able@contoso.com"})).await), "SharedMailbox");
}
