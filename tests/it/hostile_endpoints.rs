//! Webhook delivery against hostile merchant endpoints, on real sockets with a real store: a
//! tarpit cannot delay other merchants, redirects are not followed, endless answers are cut,
//! private targets are refused.

use eyre::{Result, bail};
use settleproof_config::WebhookSection;
use settleproof_devnet::demo_merchant::Receiver;
use settleproof_node::store::OutboxEvent;
use settleproof_tests::hostile::{self, Behaviour, SECRET, event, merchant, start};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

async fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Result<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if done() {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{what}: not within {within:?}")
}

/// A tarpit merchant (accepts, never answers, holds each attempt for the whole timeout) with a
/// backlog larger than the batch the worker reads shares the node with five good merchants
/// whose events came later; the good ones' events all arrive long before a single tarpit
/// attempt ends.
#[tokio::test]
async fn a_tarpit_merchant_does_not_delay_the_others() -> Result<()> {
    let (tarpit, seen) = hostile::spawn(Behaviour::Tarpit).await?;
    let rx = Receiver::new(SECRET.into(), None);
    let good = rx.clone().spawn(([127, 0, 0, 1], 0).into()).await?;
    let mut merchants = vec![merchant("tarpit", format!("http://{tarpit}/hooks"))];
    let backlog: Vec<OutboxEvent> = (0..600).map(|n| event("tarpit", n)).collect();
    let mut events = Vec::new();
    for m in 0..5 {
        let id = format!("good{m}");
        merchants.push(merchant(&id, format!("http://{good}/webhooks")));
        events.extend((0..20).map(|n| event(&id, n)));
    }
    let settings = WebhookSection {
        timeout_ms: 30_000,
        allow_private_targets: true,
        max_in_flight: 8,
        max_in_flight_per_merchant: 2,
        ..WebhookSection::default()
    };
    let run = start(merchants, settings, &backlog)?;
    // Due after the whole backlog.
    run.store.enqueue_events(&events, 1)?;
    let took = wait_for("100 deliveries to the good merchants", Duration::from_secs(20), || {
        rx.snapshot().iter().filter(|r| r.verified).count() >= 100
    })
    .await?;
    eprintln!("100 good deliveries in {took:?} ({:.0}/s) beside a tarpit", 100.0 / took.as_secs_f64());
    assert!(seen.connections.load(Ordering::Relaxed) <= 2, "the tarpit got more than its 2 slots");
    assert!(took < Duration::from_secs(20));
    let _ = run.stop.send(true);
    Ok(())
}

/// Sixteen endpoints of the merchant's own answer just before the timeout: together they hold
/// only the slots the merchant's own endpoints share, and its primary endpoint gets all 40
/// events before a single slow answer comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_endpoints_of_a_merchants_own_never_hold_back_its_primary_endpoint() -> Result<()> {
    use settleproof_merchant_auth::{KeyAlg, MerchantSigner};
    let (slow, seen) = hostile::spawn(Behaviour::Slow(Duration::from_millis(2900))).await?;
    let rx = Receiver::new(SECRET.into(), None);
    let good = rx.clone().spawn(([127, 0, 0, 1], 0).into()).await?;
    let key = MerchantSigner::generate("shop", KeyAlg::EdDsa).map_err(|e| eyre::eyre!("{e}"))?;
    let mut shop = merchant("shop", format!("http://{good}/webhooks"));
    shop.root_key = Some(key.public_key().clone());
    let urls = vec![format!("http://{slow}/hooks"); 16];
    let settings = WebhookSection { timeout_ms: 3000, allow_private_targets: true, ..WebhookSection::default() };
    let run = hostile::start_with_endpoints(shop, &key, &urls, settings)?;
    run.store.enqueue_events(&(0..40).map(|n| event("shop", n)).collect::<Vec<_>>(), 0)?;
    wait_for("40 deliveries to the primary endpoint", Duration::from_secs(20), || {
        rx.snapshot().iter().filter(|r| r.verified).count() >= 40
    })
    .await?;
    assert_eq!(seen.bytes_written.load(Ordering::Relaxed), 0, "a slow answer came back first: the primary waited");
    let connections = seen.connections.load(Ordering::Relaxed);
    assert!((1..=2).contains(&connections), "the own endpoints' shared two slots, no more: {connections}");
    let _ = run.stop.send(true);
    Ok(())
}

/// A redirect is not followed (the target behind it sees nothing) and the event goes to the
/// dead-letter queue; an endless answer is read only up to the cap; a private address is
/// refused, by name and as a literal, until the operator allows private targets.
#[tokio::test]
async fn hostile_answers_and_private_targets_are_contained() -> Result<()> {
    let (inside, inside_seen) = hostile::spawn(Behaviour::Raw("HTTP/1.1 204 No Content\r\n\r\n".into())).await?;
    let (redirect, _) = hostile::spawn(Behaviour::Redirect(format!("http://{inside}/internal"))).await?;
    let (endless, endless_seen) = hostile::spawn(Behaviour::EndlessBody).await?;
    let merchants = vec![
        merchant("redirect", format!("http://{redirect}/hooks")),
        merchant("endless", format!("http://{endless}/hooks")),
    ];
    let settings = WebhookSection {
        allow_private_targets: true,
        max_response_bytes: 64 * 1024,
        retry_schedule_s: vec![0],
        ..WebhookSection::default()
    };
    let (r, e) = (event("redirect", 0), event("endless", 0));
    let run = start(merchants, settings, &[r.clone(), e.clone()])?;
    let store = run.store.clone();
    wait_for("both attempts recorded", Duration::from_secs(10), || {
        [&r, &e].iter().all(|ev| store.attempts(&ev.id).is_ok_and(|a| !a.is_empty()))
    })
    .await?;
    let redirected = store.attempts(&r.id)?;
    assert_eq!(redirected[0].status, Some(302));
    assert!(store.outbox_event(&r.id)?.is_some_and(|ev| ev.dead_at_ms.is_some()), "a redirect is not a delivery");
    assert_eq!(inside_seen.connections.load(Ordering::Relaxed), 0, "the redirect was followed");
    let endless_attempt = &store.attempts(&e.id)?[0];
    assert_eq!(endless_attempt.status, Some(200));
    assert!(endless_attempt.excerpt.len() <= 256);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let written = endless_seen.bytes_written.load(Ordering::Relaxed);
    assert!(written < 32 << 20, "the node kept reading an endless answer: {written} bytes");
    let _ = run.stop.send(true);

    // Private targets: refused by name (after resolution) and as a literal address.
    let by_name = event("by-name", 0);
    let literal = event("literal", 0);
    let port = inside.port();
    let merchants = vec![
        merchant("by-name", format!("http://localhost:{port}/hooks")),
        merchant("literal", format!("http://127.0.0.1:{port}/hooks")),
    ];
    let strict = WebhookSection { retry_schedule_s: vec![0, 60], ..WebhookSection::default() };
    let run = start(merchants, strict, &[by_name.clone(), literal.clone()])?;
    let store = run.store.clone();
    wait_for("the by-name attempt", Duration::from_secs(10), || {
        store.attempts(&by_name.id).is_ok_and(|a| !a.is_empty())
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a = &store.attempts(&by_name.id)?[0];
    assert_eq!(a.status, None);
    assert!(a.outcome.contains("loopback, private"), "{}", a.outcome);
    let refused = store.attempts(&literal.id)?;
    assert!(
        refused.iter().all(|a| a.status.is_none() && a.outcome == "target_refused"),
        "a literal private address was dialled: {refused:?}"
    );
    assert_eq!(inside_seen.connections.load(Ordering::Relaxed), 0, "a private target was reached");
    let _ = run.stop.send(true);
    Ok(())
}
