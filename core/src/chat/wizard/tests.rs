use super::*;
use crate::chat::{ButtonValue, Command};
use crate::domain::RunId;
use crate::plan::PlanHash;

async fn svc() -> Offboarding {
    let store = crate::store::Store::connect("sqlite::memory:").await.unwrap();
    let tenant = |id: &str| crate::service::Tenant {
        id: TenantId::parse(id).unwrap(),
        name: id.into(),
        domains: vec![id.into()],
        policy: crate::policy::TenantPolicy::default(),
    };
    let mut presets = crate::request::Presets::default();
    presets.insert(TenantId::parse("fabrikam.com").unwrap(), PresetName::parse("contractor").unwrap(), Options { disable_sign_in: true, ..Options::default() });
    Offboarding::new(
        store,
        std::sync::Arc::new(crate::testing::InMemoryDirectory::default()),
        std::sync::Arc::new(crate::clock::ManualClock::at_ymd_hms(2026, 3, 1, 12, 0, 0)),
        crate::policy::Access::default(),
        vec![tenant("contoso.com"), tenant("fabrikam.com")],
        presets,
    )
}

#[test]
fn every_page_fits_every_platform() {
    let tenants = vec![TenantId::parse("contoso.com").unwrap(), TenantId::parse("fabrikam.com").unwrap()];
    let pages = wizard(&tenants, &[]);
    assert_eq!(pages.len(), 5);
    for p in &pages {
        assert!(p.fields.len() <= MAX_FIELDS_PER_PAGE, "{}", p.title);
    }
    assert_eq!(wizard(&tenants[..1], &[])[0].fields[0].id, "user", "one tenant: no tenant field");
    assert!(matches!(&pages[0].fields[0].kind, FieldKind::Select(c) if c.len() == 3), "tenants are a choice");
}

fn vals(pairs: &[(&str, Value)]) -> Values {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn page0(user: &str, preset: &str) -> Values {
    vals(&[("user", Value::Text(user.into())), ("preset", Value::Chosen(vec![preset.into()]))])
}

#[tokio::test]
async fn a_draft_becomes_a_request() {
    let svc = svc().await;
    let mut d = Draft::default();
    d.apply(0, &page0("Alice@Contoso.com", NO_PRESET), &svc).unwrap();
    assert_eq!(d.tenant.as_deref(), Some("contoso.com"), "the user's domain decides");
    d.apply(
        1,
        &vals(&[("lockout", Value::Chosen(vec!["disable_sign_in".into(), "revoke_sessions".into()])), ("device_action", Value::Chosen(vec!["wipe".into()]))]),
        &svc,
    )
    .unwrap();
    d.apply(
        2,
        &vals(&[
            ("forward_to", Value::Text("bob@contoso.com".into())),
            ("mailbox_access", Value::Text("manager, carol@contoso.com".into())),
            ("handover_options", Value::Chosen(vec!["automap".into()])),
        ]),
        &svc,
    )
    .unwrap();
    d.apply(3, &vals(&[("mailbox", Value::Chosen(vec!["convert_to_shared".into()])), ("delete_user", Value::Chosen(vec!["30".into()]))]), &svc).unwrap();
    d.apply(
        4,
        &vals(&[
            ("schedule_at", Value::Text("2030-01-02 09:00".into())),
            ("schedule_tz", Value::Text("Europe/Berlin".into())),
            ("reason", Value::Text("Contract ended".into())),
        ]),
        &svc,
    )
    .unwrap();
    let r = d.into_request(TenantId::parse("contoso.com").unwrap());
    assert!(r.options.disable_sign_in && r.options.revoke_sessions && !r.options.reset_password);
    assert_eq!(r.options.device_action, Some(DeviceAction::Wipe));
    assert!(matches!(r.options.forward_to, Some(ForwardTo { target: ForwardTarget::User(_), keep_copy: false })));
    assert_eq!(r.options.mailbox_access.as_ref().unwrap().delegates.len(), 2);
    assert_eq!(r.options.delete_user, Some(DeleteUser { defer_days: 30 }));
    assert!(matches!(r.schedule, Schedule::At { .. }));
    assert_eq!(r.reason.as_deref(), Some("Contract ended"));
}

#[tokio::test]
async fn a_preset_fills_the_pages_and_what_they_show_is_what_is_asked() {
    let svc = svc().await;
    let mut d = Draft::default();
    d.apply(0, &page0("alice@contoso.com", "hostile-exit"), &svc).unwrap();
    let preset = svc.preset_options(&TenantId::parse("contoso.com").unwrap(), &PresetName::parse("hostile-exit").unwrap()).unwrap();
    assert_eq!(d.options, preset, "the preset fills the draft");
    // Every later page shows the preset's choices; submitting them unchanged keeps them.
    for page in 1..=3 {
        let shown = d.values(page);
        d.apply(page, &shown, &svc).unwrap();
    }
    assert_eq!(d.options, preset, "pages submitted as shown change nothing");
    // One more box ticked adds exactly that option.
    let mut shown = d.values(1);
    let Some(Value::Chosen(access)) = shown.get_mut("access") else { panic!("access is a checkbox group") };
    access.push("cancel_meetings".into());
    d.apply(1, &shown, &svc).unwrap();
    assert_eq!(d.options.deviations_from(&preset), vec!["added Cancel meetings the user organises".to_string()]);
    assert!(d.options.disable_sign_in && d.options.device_action == Some(DeviceAction::Wipe), "the rest of the preset stays");
}

#[tokio::test]
async fn page_errors_name_their_fields_on_their_page() {
    let svc = svc().await;
    let mut d = Draft::default();
    let e = d.apply(0, &page0("not a upn", NO_PRESET), &svc).unwrap_err();
    assert_eq!(e.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), vec!["user"]);
    let e = d.apply(0, &page0("alice@contoso.com", "contractor"), &svc).unwrap_err();
    assert_eq!(e[0].field, "preset", "contractor is fabrikam's preset, not contoso's: {e:?}");
    d.apply(0, &page0("alice@contoso.com", NO_PRESET), &svc).unwrap();
    let e = d.apply(2, &vals(&[("forward_to", Value::Text("x@@y".into()))]), &svc).unwrap_err();
    assert_eq!(e[0].field, "forward_to");
    let e = d.apply(2, &vals(&[("oof_internal", Value::Text("{{ manager.nmae }}".into()))]), &svc).unwrap_err();
    assert_eq!(e[0].field, "oof_internal");
    d.apply(2, &Values::new(), &svc).unwrap();
    let e = d.apply(3, &Values::new(), &svc).unwrap_err();
    assert!(e[0].field == "mailbox" && e[0].message.contains("choose at least one action"), "{e:?}");
    let e = d.apply(4, &vals(&[("schedule_at", Value::Text("tomorrow".into()))]), &svc).unwrap_err();
    assert_eq!(e.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), vec!["schedule_at", "reason"]);
    let mut ok = Draft::default();
    ok.apply(0, &page0("alice@contoso.com", NO_PRESET), &svc).unwrap();
    ok.apply(2, &vals(&[("forward_to", Value::Text("partner@example.org".into()))]), &svc).unwrap();
    assert!(matches!(ok.options.forward_to.unwrap().target, ForwardTarget::External(_)));
}

#[test]
fn commands_parse() {
    assert_eq!(Command::parse(""), Command::Offboard { user: None, preset: None });
    assert_eq!(
        Command::parse("alice@contoso.com hostile-exit"),
        Command::Offboard { user: Some("alice@contoso.com".into()), preset: Some("hostile-exit".into()) }
    );
    assert_eq!(Command::parse("STATUS ob-7k2m9x4q1d"), Command::Status(RunId::parse("ob-7k2m9x4q1d").unwrap()));
    assert!(matches!(Command::parse("cancel"), Command::Unknown(m) if m.contains("needs a run id")));
    assert!(matches!(Command::parse("frobnicate"), Command::Unknown(m) if m.contains("try \"help\"")));
    assert_eq!(Command::parse("list"), Command::List);
}

#[test]
fn button_values_round_trip_and_reject_junk() {
    let run = RunId::parse("ob-7k2m9x4q1d").unwrap();
    let a = ButtonValue::Approve { run: run.clone(), plan: PlanHash("ab".repeat(32)) };
    assert_eq!(ButtonValue::decode(&a.encode()), Some(a));
    let r = ButtonValue::Reject { run };
    assert_eq!(ButtonValue::decode(&r.encode()), Some(r));
    for junk in ["approve:ob-7k2m9x4q1d", "approve:ob-7k2m9x4q1d:xyz", "delete:ob-7k2m9x4q1d", "reject:nope"] {
        assert_eq!(ButtonValue::decode(junk), None, "{junk}");
    }
}
