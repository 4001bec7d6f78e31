use super::adaptive::REGROW_S;
use super::*;

#[test]
fn lanes_follow_the_published_cost_table() {
    assert_eq!(Lane::for_graph("GET", "/users/x/memberOf/microsoft.graph.group?$select=id"), Lane::Identity { ru: 1, write: false });
    assert_eq!(Lane::for_graph("GET", "/users/x/transitiveMemberOf"), Lane::Identity { ru: 5, write: false });
    assert_eq!(Lane::for_graph("DELETE", "/groups/g/members/u/$ref"), Lane::Identity { ru: 1, write: true });
    assert_eq!(Lane::for_graph("POST", "/deviceManagement/managedDevices/d/wipe"), Lane::Intune { write: true });
    assert_eq!(Lane::for_graph("GET", "/users/u1/calendarView?startDateTime=x"), Lane::Outlook { mailbox: "u1".into() });
    assert_eq!(Lane::for_graph("POST", "/drives/d/items/r/invite"), Lane::Unpaced);
}

#[tokio::test]
async fn a_bucket_makes_callers_wait_instead_of_overrunning() {
    let p = Pacer::new(Limits { exchange_per_s: 20.0, ..Limits::default() });
    let start = Instant::now();
    for _ in 0..30 {
        p.admit("t", &Lane::Exchange, Patience::Waits).await.unwrap();
    }
    // 20 at once, then 10 more at 20/s: at least half a second.
    assert!(start.elapsed() >= Duration::from_millis(450), "{:?}", start.elapsed());
}

#[test]
fn an_unpublished_limit_is_found_by_trying() {
    let t0 = Instant::now();
    let at = |s: f64| t0 + Duration::from_secs_f64(s);
    let mut a = Adaptive::new(20.0, t0);
    // Calls that never wait for the rate teach it nothing.
    for _ in 0..20 {
        assert_eq!(a.take(t0, 1.0), None);
        a.clean(t0, 1.0);
    }
    assert_eq!(a.current(t0, 1.0), 20.0);
    // Slow start: while callers wait for it, each clean answer adds a call per second.
    assert!(a.take(t0, 1.0).is_some(), "the 21st call in a second waits");
    for _ in 0..10 {
        assert_eq!(a.take(at(0.5), 1.0), None);
    }
    for _ in 0..30 {
        a.clean(at(0.5), 1.0);
    }
    assert_eq!(a.current(at(1.0), 1.0), 50.0);
    // A 429 cuts to 70 % and holds the lane for its Retry-After.
    a.throttled(at(0.9), Some(Duration::from_millis(500)), at(1.0), 1.0);
    assert!((a.current(at(1.0), 1.0) - 35.0).abs() < 1e-9);
    assert_eq!(a.take(at(1.2), 1.0), Some(Duration::from_millis(300)), "held until the Retry-After has passed");
    // Answers to calls sent before the cut do not cut again.
    a.throttled(at(0.95), None, at(1.05), 1.0);
    assert_eq!((a.ceiling, a.cut_at), (Some(50.0), at(1.0)), "one cut per round of calls");
    // Clean answers no longer add: while callers wait for it, the cubic regrows, back at
    // the ceiling after REGROW_S…
    a.limited_at = Some(at(1.0 + REGROW_S));
    a.clean(at(1.0 + REGROW_S), 1.0);
    let mid = a.current(at(1.0 + REGROW_S / 2.0), 1.0);
    assert!(mid > 45.0 && mid < 50.0, "concave on the way back: {mid}");
    assert!((a.current(at(1.0 + REGROW_S), 1.0) - 50.0).abs() < 1e-9);
    // …then probes above it, never past twice the ceiling…
    a.limited_at = Some(at(1.0 + REGROW_S + 3.0));
    assert!(a.current(at(1.0 + REGROW_S + 3.0), 1.0) > 50.0);
    a.limited_at = Some(at(1.0 + 10.0 * REGROW_S));
    assert_eq!(a.current(at(1.0 + 10.0 * REGROW_S), 1.0), 100.0);
    // …and not at all while nobody waits for it.
    assert_eq!(a.current(at(1.0 + 20.0 * REGROW_S), 1.0), 100.0);
    let mut idle = Adaptive::learned(40.0, t0, 1.0);
    assert_eq!(idle.current(at(30.0), 1.0), 40.0, "a rate nobody waited for is not raised");
    // A new 429 from a call sent after the cut cuts again.
    a.throttled(at(70.0), None, at(70.1), 1.0);
    assert!((a.current(at(70.1), 1.0) - 70.0).abs() < 1e-9);
}

#[test]
fn a_rate_nobody_sent_at_is_neither_reached_nor_learned() {
    let t0 = Instant::now();
    let at = |s: f64| t0 + Duration::from_secs_f64(s);
    // 25 calls at the start of each second, each answered cleanly 100 ms after it goes, in
    // steps of 10 ms: the first burst waits for the rate, so the answers are counted.
    let run = |bursts: usize, per_burst: usize| {
        let mut a = Adaptive::new(20.0, t0);
        let (mut queue, mut in_flight) = (0, Vec::new());
        for tick in 0..(bursts * 100 + 100) {
            let now = at(tick as f64 / 100.0);
            if tick % 100 == 0 && tick / 100 < bursts {
                queue += per_burst;
            }
            in_flight.retain(|sent: &Instant| {
                let answered = now.saturating_duration_since(*sent) >= Duration::from_millis(100);
                if answered {
                    a.clean(now, 1.0);
                }
                !answered
            });
            while queue > 0 && a.take(now, 1.0).is_none() {
                queue -= 1;
                in_flight.push(now);
            }
        }
        (a.current(at(bursts as f64 + 1.0), 1.0), a.learned_rate(at(bursts as f64 + 1.0), 1.0))
    };
    // Without the cap, the 50 answers while a caller had waited would make it 70.
    assert_eq!(run(10, 25), (50.0, 25.0), "never past twice the 25 calls sent in a second; learned is what was sent");
    // A caller with 300 calls a second to send: slow start doubles and learns that much.
    let (rate, learned) = run(10, 300);
    assert!(learned >= 290.0 && learned <= rate, "learned {learned}, at {rate}");
}

#[test]
fn a_learned_rate_starts_at_its_ceiling_and_time_is_microsofts() {
    let t0 = Instant::now();
    let mut a = Adaptive::learned(60.0, t0, 0.1);
    assert!((a.current(t0, 0.1) - 60.0).abs() < 1e-9, "no slow start after a restart");
    // At a time scale of 0.1, one real second is ten of Microsoft's.
    a.throttled(t0, None, t0, 0.1);
    let later = t0 + Duration::from_secs_f64(REGROW_S * 0.1);
    a.limited_at = Some(later);
    let back = a.current(later, 0.1);
    assert!((back - 60.0).abs() < 1e-6, "{back}");
}

#[tokio::test]
async fn a_caller_with_patience_is_sent_away_when_the_queue_ahead_is_long() {
    // Ten writes per 1.5 s: one every 150 ms once the bucket is empty.
    let p = Arc::new(Pacer::new(Limits { identity_writes_per_150s: 10.0, time_scale: 0.01, ..Limits::default() }));
    let write = Lane::for_graph("PATCH", "/users/u");
    let patience = Patience::Queue(Duration::from_millis(500));
    for _ in 0..10 {
        p.admit("t", &write, patience).await.unwrap();
    }
    assert!(p.admit("t", &write, patience).await.is_ok(), "one write behind nobody waits 150 ms: within patience");
    // Five callers now sleep on the bucket; a sixth would wait behind all of them.
    let sleepers: Vec<_> = (0..5)
        .map(|_| {
            let (p, write) = (p.clone(), write.clone());
            tokio::spawn(async move { p.admit("t", &write, Patience::Waits).await.map(|_| ()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let first = p.admit("t", &write, patience).await.unwrap_err();
    assert_eq!(first.budget, Budget::IdentityWrites);
    assert!(first.wait > Duration::from_millis(700), "behind five sleepers and one in flight: {first:?}");
    let second = p.admit("t", &write, patience).await.unwrap_err();
    assert!(second.wait >= first.wait + Duration::from_millis(140), "sent-away callers come back one after another: {second:?}");
    for s in sleepers {
        s.await.unwrap().unwrap();
    }
    // A Retry-After on the Exchange lane sends a patient caller away for at least its length.
    p.admit("t", &Lane::Exchange, Patience::Waits).await.unwrap();
    p.answered("t", &Lane::Exchange, Instant::now(), Answer::Throttled(Some(Duration::from_secs(3))));
    let held = p.admit("t", &Lane::Exchange, patience).await.unwrap_err();
    assert_eq!(held.budget, Budget::Exchange);
    assert!(held.wait >= Duration::from_millis(2900), "{held:?}");
}

#[tokio::test]
async fn bulk_work_leaves_a_reserve_for_a_lockout() {
    // 100 writes per 150 s (scaled to 1.5 s): bulk work takes 95 and then waits.
    let p = Pacer::new(Limits { identity_writes_per_150s: 100.0, time_scale: 0.01, ..Limits::default() });
    let write = Lane::for_graph("PATCH", "/users/u");
    let patience = Patience::Queue(Duration::ZERO);
    let mut bulk = 0;
    while p.admit("t", &write, patience).await.is_ok() {
        bulk += 1;
        assert!(bulk <= 100, "patience never ran out");
    }
    assert!((95..=96).contains(&bulk), "bulk work stops at the reserve (plus what refilled meanwhile): {bulk}");
    let start = Instant::now();
    for _ in 0..4 {
        p.admit("t", &write, Patience::Waits).await.unwrap();
    }
    assert!(start.elapsed() < Duration::from_millis(10), "a lockout's writes go at once: {:?}", start.elapsed());
}

#[tokio::test]
async fn a_lockout_that_would_wait_long_goes_back_once_but_never_behind_bulk_work() {
    // 20 writes per 150 s: one every 7.5 s once an emergency has taken them all.
    let p = Arc::new(Pacer::new(Limits { identity_writes_per_150s: 20.0, ..Limits::default() }));
    let write = Lane::for_graph("PATCH", "/users/u");
    p.admit("t", &Lane::Batch(vec![write.clone(); 20]), Patience::First).await.unwrap();
    // Three bulk steps back from the queue sleep on the bucket.
    let bulk: Vec<_> = (0..3)
        .map(|_| {
            let (p, write) = (p.clone(), write.clone());
            tokio::spawn(async move { p.admit("t", &write, Patience::Queue(Duration::MAX)).await.map(|_| ()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let lockout = || p.admit("t", &write, Patience::Lockout(Duration::from_secs(2)));
    // Sent back at once, nothing taken, told what it waits for: one write and the 1 % it
    // leaves to emergencies (9 s), not behind the three bulk steps asleep (another 22.5 s).
    let first = lockout().await.expect_err("a 9 s wait is over the lockout's 2 s");
    assert_eq!(first.budget, Budget::IdentityWrites);
    assert!(first.wait > Duration::from_secs(8) && first.wait < Duration::from_secs(10), "{first:?}");
    // Bulk work sent away now comes back after the sleepers and the 5 % reserve.
    let queued = p.admit("t", &write, Patience::Queue(Duration::from_millis(250))).await.expect_err("bulk waits");
    assert!(queued.wait > Duration::from_secs(37), "{queued:?}");
    // The next lockout comes back after the first one's write, still before that bulk step.
    let second = lockout().await.expect_err("sent back");
    assert!(second.wait >= first.wait + Duration::from_secs(7) && second.wait < queued.wait, "{second:?} {queued:?}");
    // With room, a lockout is admitted as before.
    let fresh = Pacer::new(Limits { identity_writes_per_150s: 20.0, ..Limits::default() });
    assert!(fresh.admit("t", &write, Patience::Lockout(Duration::from_secs(2))).await.is_ok());
    for b in bulk {
        b.abort();
    }
}

#[tokio::test]
async fn an_emergency_goes_before_the_lockouts_already_waiting() {
    // 1,000 writes per 150 s (scaled to 1.5 s): a bulk's lockouts take 990, then queue.
    let p = Arc::new(Pacer::new(Limits { identity_writes_per_150s: 1000.0, time_scale: 0.01, ..Limits::default() }));
    let write = Lane::for_graph("PATCH", "/users/u");
    for _ in 0..985 {
        p.admit("t", &write, Patience::Waits).await.unwrap();
    }
    // Two hundred more lockouts queue: about 300 ms of writes.
    let waiting: Vec<_> = (0..200)
        .map(|_| {
            let (p, write) = (p.clone(), write.clone());
            tokio::spawn(async move { p.admit("t", &write, Patience::Waits).await.map(|_| ()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(5)).await;
    // A zero timeout still polls once: `Ok` means admitted without waiting at all. The
    // lockouts queued leave under one write in the bucket, but not the reserve.
    let now = |patience| tokio::time::timeout(Duration::ZERO, p.admit("t", &write, patience));
    for i in 0..4 {
        assert!(now(Patience::First).await.is_ok(), "an emergency's write {i} goes at once");
    }
    for w in waiting {
        w.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_batch_draws_one_write_per_item() {
    let p = Pacer::new(Limits { identity_writes_per_150s: 20.0, time_scale: 0.01, ..Limits::default() });
    let delete = Lane::for_graph("DELETE", "/groups/g/members/u/$ref");
    let start = Instant::now();
    p.admit("t", &Lane::Batch(vec![delete.clone(); 20]), Patience::Waits).await.unwrap();
    assert!(start.elapsed() < Duration::from_millis(100), "a full bucket admits 20 at once");
    // The bucket is empty: ten more writes refill at 20 per 1.5 s (150 s scaled by 0.01).
    p.admit("t", &Lane::Batch(vec![delete; 10]), Patience::Waits).await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(700), "{:?}", start.elapsed());
}
