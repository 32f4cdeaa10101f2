//! A Byzantine operator against the merchant's invoices: altered terms, invoices the merchant
//! never signed, ghosts in another operator's name, and an invoice announced before the
//! others' registries hold its merchant.

use crate::byzantine::{
    BAD, WEI, admin, approve_change, invoice_of, labelled_metric, pay_wei, peer_id, score_of, with_byzantine,
};
use crate::harness::Options;
use alloy::primitives::{Address, B256, U256};
use eyre::{Result, eyre};
use serde_json::{Value, json};
use settleproof_node::store::Invoice;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_altered_invoice_is_refused_and_the_merchant_hears_the_true_terms() -> Result<()> {
    let (net, bad) = with_byzantine(Options::default()).await?;
    // Node 2 is cut off from the honest nodes, so it never hears the real invoice from them.
    for other in [0, 1] {
        admin(&net, 2, "peers/block", json!({"peer_id": peer_id(&net, other)})).await?;
        admin(&net, other, "peers/block", json!({"peer_id": peer_id(&net, 2)})).await?;
    }
    let (status, created) = net.create_invoice(0, json!({"amount": WEI, "token": "native"})).await?;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().ok_or_else(|| eyre!("id"))?.to_string();
    // The Byzantine operator tells node 2 (announcing, and when asked) that the invoice asks
    // for 1 wei.
    let altered = Invoice { amount: U256::from(1), ..invoice_of(&net, &created)? };
    bad.answer_fetches_with(altered.clone());
    for _ in 0..5 {
        bad.announce(altered.clone()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    net.eventually("node 2 refused the altered copy", Duration::from_secs(15), || async {
        (net.metric(2, "invoice_conflicts_total").await >= 1.0).then_some(())
    })
    .await?;
    let (status, _) = net.get_invoice(2, &id).await?;
    assert_eq!(status, 404, "node 2 stored no copy of the invoice");

    // Healed, the payer pays 1 wei: every node finds the invoice underpaid.
    for other in [0, 1] {
        admin(&net, 2, "peers/unblock", json!({"peer_id": peer_id(&net, other)})).await?;
        admin(&net, other, "peers/unblock", json!({"peer_id": peer_id(&net, 2)})).await?;
    }
    pay_wei(&net, &created, 1).await?;
    let body = net.webhook_for(&id, Duration::from_secs(60)).await?;
    assert_eq!(body["type"], "invoice.underpaid", "{body}");
    assert_eq!(body["data"]["receipt"]["invoice"]["amount"], json!(format!("{:#x}", U256::from_str_radix(WEI, 10)?)));
    tokio::time::sleep(Duration::from_secs(6)).await;
    for r in net.receiver.snapshot().iter().filter(|r| r.body["data"]["invoice"]["id"] == id.as_str()) {
        assert_eq!(r.body["type"], "invoice.underpaid", "no node announced the invoice paid: {}", r.body);
    }
    let (_, v) = net.get_invoice(2, &id).await?;
    assert_eq!(v["amount"], WEI, "node 2 holds the true terms: {v}");
    net.stop().await;
    Ok(())
}

/// Invoices the merchant did not sign, from an operator in its own name with a sound id:
/// unsigned, signed by a key of its own in the merchant's name, and the merchant's signed
/// request with its terms changed. No node holds any of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invoices_the_merchant_did_not_sign_are_refused() -> Result<()> {
    let (net, bad) = with_byzantine(Options::default()).await?;
    let (_, created) = net.create_invoice(0, json!({"amount": WEI, "token": "native"})).await?;
    let template = invoice_of(&net, &created)?;
    let (by, merchant) = (format!("node-{BAD}"), net.devnet.merchant.clone());
    let (chain_id, payments) = (net.devnet.chain_id, net.devnet.deployment.payments);
    // In its own name, with an id that commits to the terms: one the merchant never signed...
    let mut unsigned =
        Invoice { amount: U256::from(1), nonce: B256::repeat_byte(0x9c), created_by: by.clone(), ..template.clone() };
    unsigned.id = unsigned.terms(chain_id, payments).id();
    // ...and one it signed itself in the merchant's name, sending the payer elsewhere after.
    let impostor = net.merchant_signer(&merchant.id, settleproof_merchant_auth::KeyAlg::EdDsa)?;
    let ghost_body = json!({"amount": "1", "token": "native", "redirect_url": "https://evil.example/"});
    let forged = crate::harness::signed_invoice(&net, &impostor, ghost_body, merchant.payout_address, &by)?;
    // Whether a merchant's key signed depends on the registry: neither costs the relayer. Five
    // of each are sent, and at least six refusals need both kinds refused.
    for _ in 0..5 {
        bad.announce(unsigned.clone()).await;
        bad.announce_packed(std::slice::from_ref(&forged)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for i in 0..3 {
        net.eventually("the unsigned ghosts are refused", Duration::from_secs(15), || async {
            (labelled_metric(&net, i, "merchant_records_refused_total", "kind=\"invoice\"").await >= 6.0).then_some(())
        })
        .await?;
    }
    // The merchant's own signed request (which the operator holds), its terms changed: the
    // id commits to the new terms, but they are not what the merchant signed.
    let genuine = crate::harness::signed_invoice(
        &net,
        &net.devnet.merchant_key,
        json!({"amount": WEI, "token": "native"}),
        merchant.payout_address,
        &by,
    )?;
    let mut altered = Invoice { amount: U256::from(1), redirect_url: Some("https://evil.example/".into()), ..genuine };
    altered.id = altered.terms(chain_id, payments).id();
    // The first refusal that blames the author graylists it, after which the honest nodes no
    // longer hear it at all.
    for _ in 0..5 {
        bad.announce(altered.clone()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    net.eventually("the altered request refused", Duration::from_secs(15), || async {
        (labelled_metric(&net, 0, "invoice_conflicts_total", "reason=\"invoice_not_as_signed\"").await >= 1.0)
            .then_some(())
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..3 {
        for ghost in [&unsigned, &forged, &altered] {
            let (status, _) = net.get_invoice(i, &ghost.id.to_string()).await?;
            assert_eq!(status, 404, "node {i} does not hold ghost {}", ghost.id);
            let page = net.http.get(format!("{}/checkout/{}", net.api(i), ghost.id)).send().await?;
            assert_eq!(page.status().as_u16(), 404, "node {i} shows no checkout for ghost {}", ghost.id);
        }
    }
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ghost_invoices_are_refused() -> Result<()> {
    let (net, bad) = with_byzantine(Options::default()).await?;
    let (_, created) = net.create_invoice(0, json!({"amount": WEI, "token": "native"})).await?;
    let template = invoice_of(&net, &created)?;
    // An invoice nobody created, whose id commits to nothing...
    let unbound = Invoice { id: B256::repeat_byte(0x9d), amount: U256::from(1), ..template.clone() };
    // ...and one with a sound id, passed off as node 0's.
    let mut in_my_name = Invoice { amount: U256::from(1), nonce: B256::repeat_byte(0x9e), ..template };
    in_my_name.id = in_my_name.terms(net.devnet.chain_id, net.devnet.deployment.payments).id();
    // The first refusal penalises the author below the graylist threshold, after which the
    // honest nodes no longer hear it at all; the ghost in node 0's name goes first.
    for _ in 0..5 {
        bad.announce(in_my_name.clone()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    net.eventually("the ghost in another's name refused", Duration::from_secs(15), || async {
        (net.metric(0, "invoice_conflicts_total").await >= 1.0).then_some(())
    })
    .await?;
    for _ in 0..5 {
        bad.announce(unbound.clone()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..3 {
        for ghost in [&unbound, &in_my_name] {
            let (status, _) = net.get_invoice(i, &ghost.id.to_string()).await?;
            assert_eq!(status, 404, "node {i} does not hold ghost {}", ghost.id);
        }
    }
    net.stop().await;
    Ok(())
}

/// An operator whose registry is ahead of the others' (a merchant's approval has not reached
/// them yet) announces an invoice of that merchant once. The others keep it, take it when the
/// approval reaches them, and answer it, with no second announcement. The same invoice passed
/// off in another operator's name is refused and scored, whatever the registry holds. (The
/// Byzantine operator plays the operator that is ahead: it announces once, in its own name.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invoice_of_a_merchant_approved_later_is_kept_until_the_registry_holds_it() -> Result<()> {
    let (net, bad) = with_byzantine(Options::default()).await?;
    let shop = net.merchant_signer("late-shop", settleproof_merchant_auth::KeyAlg::EdDsa)?;
    let payout: Address = "0x3333333333333333333333333333333333333333".parse()?;
    let onboarding = json!({
        "id": "late-shop",
        "payout_address": payout,
        "webhook_url": net.devnet.merchant.webhook_url,
        "webhook_secret": net.devnet.merchant.webhook_secret.expose(),
        "root_key": shop.public_key(),
    });
    let proposed = admin(&net, 0, "merchants", onboarding).await?;
    let hash = proposed["change_hash"].as_str().ok_or_else(|| eyre!("no hash: {proposed}"))?.to_string();
    approve_change(&net, 1, &hash).await?;

    // Two approvals of three: no honest node serves the merchant yet. The merchant signed two
    // invoices at the Byzantine operator's node.
    let by = format!("node-{BAD}");
    let ahead = crate::harness::signed_invoice(&net, &shop, json!({"amount": "7000", "token": "native"}), payout, &by)?;
    // One packed as honest nodes replicate, one alone as earlier versions did.
    let alone = crate::harness::signed_invoice(&net, &shop, json!({"amount": "7000", "token": "native"}), payout, &by)?;
    assert!(bad.announce_packed(std::slice::from_ref(&ahead)).await, "gossip took the announcement");
    assert!(bad.announce(alone.clone()).await, "gossip took the single announcement");
    for i in 0..3 {
        net.eventually("both invoices wait for the registry", Duration::from_secs(15), || async {
            (labelled_metric(&net, i, "invoices_parked_total", "outcome=\"parked\"").await >= 2.0).then_some(())
        })
        .await?;
    }
    let checkout = |i: usize, id: B256| {
        let req = net.http.get(format!("{}/checkout/{id}/status", net.api(i)));
        async move { req.send().await.map(|r| r.status().as_u16()).unwrap_or_default() }
    };
    let get = |i: usize, id: B256| {
        let req = crate::harness::signed(
            &net.http,
            &shop,
            reqwest::Method::GET,
            &format!("{}/v1/invoices/{id}", net.api(i)),
            None,
        );
        async move {
            let Ok(req) = req else { return 0 };
            req.send().await.map(|r| r.status().as_u16()).unwrap_or_default()
        }
    };
    for i in 0..3 {
        for id in [ahead.id, alone.id] {
            assert_eq!(checkout(i, id).await, 404, "node {i} does not hold a waiting invoice");
        }
        assert_eq!(get(i, ahead.id).await, 401, "node {i} does not serve the merchant yet");
    }

    // The third approval: every honest node takes the waiting invoices, each heard once.
    approve_change(&net, 2, &hash).await?;
    for i in 0..3 {
        for id in [ahead.id, alone.id] {
            net.eventually("the waiting invoice is taken", Duration::from_secs(20), || async {
                (get(i, id).await == 200 && checkout(i, id).await == 200).then_some(())
            })
            .await?;
        }
    }

    // Terms altered under the operator's own name (the id no longer commits to them): refused
    // and scored before the registry is asked. (A refusal graylists the author, so this comes
    // last; invoices in another operator's name are `ghost_invoices_are_refused`.)
    let altered = Invoice { amount: U256::from(1u64), nonce: B256::repeat_byte(0x5b), ..ahead.clone() };
    let mismatch = "reason=\"invoice_id_mismatch\"";
    let refused_before = labelled_metric(&net, 1, "invoice_conflicts_total", mismatch).await;
    let score_before = score_of(&net, 1, BAD).await?;
    assert!(bad.announce_packed(std::slice::from_ref(&altered)).await, "gossip took the announcement");
    net.eventually("the altered invoice is refused and its author scored", Duration::from_secs(15), || async {
        let refused = labelled_metric(&net, 1, "invoice_conflicts_total", mismatch).await > refused_before;
        let scored = score_of(&net, 1, BAD).await.ok()? < score_before;
        (refused && scored).then_some(())
    })
    .await?;
    let kept: Value = crate::harness::signed(
        &net.http,
        &shop,
        reqwest::Method::GET,
        &format!("{}/v1/invoices/{}", net.api(1), ahead.id),
        None,
    )?
    .send()
    .await?
    .json()
    .await?;
    assert_eq!(kept["amount"], "7000", "node 1 keeps the true terms: {kept}");
    net.stop().await;
    Ok(())
}

/// A node away while the merchant made an invoice with a key, and back only after the merchant
/// revoked that key, takes the invoice once it is paid: the f + 1 operators that held it before
/// the revocation vouch for it. A thief of the key gets nothing taken there: not an invoice it
/// signed after the revocation dated before it, which the Byzantine operator alone hands out,
/// nor one it made at an honest node that had not heard of the revocation yet (two honest
/// holders and the Byzantine operator hand it out, but received it after the revocation).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_node_takes_what_enough_operators_held_before_a_revocation_and_not_what_one_vouches_for() -> Result<()> {
    use crate::merchants::{call, grant_key};
    use reqwest::Method;
    let (net, bad) = with_byzantine(Options::default()).await?;
    let root = net.devnet.merchant_key.clone();
    let (status, granted, key) = grant_key(&net, 0, "shop", &["invoices:write", "invoices:read"]).await?;
    assert_eq!(status, 201, "{granted}");
    for i in 0..3 {
        net.eventually("the key is known", Duration::from_secs(15), || async {
            (call(&net, i, Method::GET, "/v1/invoices", &key, None).await.ok()?.0 == 200).then_some(())
        })
        .await?;
    }
    // Node 2 is away (cut off from every other node: the Byzantine one would relay) while the
    // key makes an invoice...
    for other in [0, 1] {
        admin(&net, 2, "peers/block", json!({"peer_id": peer_id(&net, other)})).await?;
        admin(&net, other, "peers/block", json!({"peer_id": peer_id(&net, 2)})).await?;
    }
    admin(&net, 2, "peers/block", json!({"peer_id": peer_id(&net, BAD)})).await?;
    let body = net.on_first_chain(json!({"amount": WEI, "token": "native"}));
    let (status, created) = call(&net, 0, Method::POST, "/v1/invoices", &key, Some(body)).await?;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().ok_or_else(|| eyre!("id"))?.to_string();
    net.eventually("node 1 holds the invoice", Duration::from_secs(15), || async {
        (net.get_invoice(1, &id).await.ok()?.0 == 200).then_some(())
    })
    .await?;
    // ...and hears first, back, that the merchant revoked it, more than the allowed clock skew
    // later (the merchant's clock may run that far ahead, so a revocation may have begun as
    // early as its signing time less the skew; what was received since is not vouched for).
    tokio::time::sleep(Duration::from_secs(settleproof_merchant_auth::MAX_SKEW_S + 1)).await;
    let revoke = format!("/v1/api-keys/{}", key.key_id());
    let (status, revoked) = call(&net, 2, Method::DELETE, &revoke, &root, None).await?;
    assert_eq!(status, 200, "{revoked}");
    // A thief of the key signs an invoice after the revocation, dated before it.
    let signed_at = settleproof_node::time::now_s().saturating_sub(60);
    let merchant = &net.devnet.merchant;
    let stolen_body = json!({"amount": WEI, "token": "native", "nonce": B256::repeat_byte(0x5e)});
    let stolen = crate::harness::signed_invoice_at(
        &net,
        &key,
        stolen_body,
        merchant.payout_address,
        &format!("node-{BAD}"),
        signed_at,
    )?;
    bad.answer_fetches_with(stolen.clone());
    // The thief also makes an invoice at node 1, which has not heard of the revocation: nodes 0
    // and 1 take it, and the Byzantine operator hands it out too.
    let body = net.on_first_chain(json!({"amount": WEI, "token": "native"}));
    let (status, lagging) = call(&net, 1, Method::POST, "/v1/invoices", &key, Some(body)).await?;
    assert_eq!(status, 201, "{lagging}");
    let lagging_id = lagging["id"].as_str().ok_or_else(|| eyre!("id"))?.to_string();
    let request: settleproof_merchant_auth::SignedStatement =
        serde_json::from_value(lagging["signed_request"].clone())?;
    let terms = settleproof_node::merchants::invoice_record::read(&request).map_err(|e| eyre!("{e}"))?;
    bad.answer_fetches_with(terms.into_invoice(
        request,
        merchant.payout_address,
        net.devnet.deployment.payments,
        (format!("node-{BAD}"), settleproof_node::time::now_s()),
    ));
    net.eventually("node 0 holds the thief's invoice", Duration::from_secs(15), || async {
        (net.get_invoice(0, &lagging_id).await.ok()?.0 == 200).then_some(())
    })
    .await?;
    for other in [0, 1] {
        admin(&net, 2, "peers/unblock", json!({"peer_id": peer_id(&net, other)})).await?;
        admin(&net, other, "peers/unblock", json!({"peer_id": peer_id(&net, 2)})).await?;
    }
    admin(&net, 2, "peers/unblock", json!({"peer_id": peer_id(&net, BAD)})).await?;
    let (status, _) = call(&net, 0, Method::DELETE, &revoke, &root, None).await?;
    assert!(matches!(status, 200 | 404), "{status}");
    for i in 0..3 {
        net.eventually("the revocation is everywhere", Duration::from_secs(15), || async {
            (call(&net, i, Method::GET, "/v1/invoices", &key, None).await.ok()?.0 == 401).then_some(())
        })
        .await?;
    }
    let (status, _) = net.get_invoice(2, &id).await?;
    assert_eq!(status, 404, "node 2 refused the invoice so far");

    // Both are paid. Node 2 takes the merchant's invoice on the word of nodes 0 and 1.
    let payments = settleproof_contracts::InvoicePayments::new(net.devnet.deployment.payments, net.payer()?);
    for paid in [stolen.id, lagging_id.parse()?, id.parse()?] {
        let r = payments
            .payNative(paid, merchant.payout_address)
            .value(U256::from_str_radix(WEI, 10)?)
            .send()
            .await?
            .get_receipt()
            .await?;
        assert!(r.status());
    }
    net.eventually("node 2 holds the merchant's invoice", Duration::from_secs(60), || async {
        (net.get_invoice(2, &id).await.ok()?.0 == 200).then_some(())
    })
    .await?;
    assert!(labelled_metric(&net, 2, "invoices_vouched_total", "chain_id").await >= 1.0);
    net.eventually("node 2 refused the stolen one", Duration::from_secs(30), || async {
        (labelled_metric(&net, 2, "invoice_conflicts_total", "reason=\"not_taken\"").await >= 1.0).then_some(())
    })
    .await?;
    for i in 0..3 {
        let (status, v) = net.get_invoice(i, &stolen.id.to_string()).await?;
        assert_eq!(status, 404, "node {i} holds the stolen invoice: {v}");
    }
    net.eventually("node 2 refused the thief's invoice from node 1", Duration::from_secs(30), || async {
        (labelled_metric(&net, 2, "invoice_conflicts_total", "reason=\"not_taken\"").await >= 2.0).then_some(())
    })
    .await?;
    let (status, v) = net.get_invoice(2, &lagging_id).await?;
    assert_eq!(
        status, 404,
        "node 2 took the thief's invoice on the word of holders that got it after the revocation: {v}"
    );
    net.stop().await;
    Ok(())
}

/// One signed request makes one invoice. After the operators' threshold changes a merchant's
/// payout address, the Byzantine operator replays the merchant's old signed request under the
/// new address: a new id, every check of the request passing. No node keeps it. The merchant's
/// own client sending a request with a nonce that made an invoice already gets a 409 naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signed_request_replayed_after_a_payout_change_makes_no_second_invoice() -> Result<()> {
    use crate::merchants::call;
    use reqwest::Method;
    let (net, bad) = with_byzantine(Options::default()).await?;
    let shop = net.merchant_signer("nonce-shop", settleproof_merchant_auth::KeyAlg::EdDsa)?;
    let (old_payout, new_payout): (Address, Address) =
        ("0x3434343434343434343434343434343434343434".parse()?, "0x4545454545454545454545454545454545454545".parse()?);
    let onboarding = json!({
        "id": "nonce-shop",
        "payout_address": old_payout,
        "webhook_url": net.devnet.merchant.webhook_url,
        "webhook_secret": net.devnet.merchant.webhook_secret.expose(),
        "root_key": shop.public_key(),
    });
    let proposed = admin(&net, 0, "merchants", onboarding).await?;
    let hash = proposed["change_hash"].as_str().ok_or_else(|| eyre!("no hash: {proposed}"))?.to_string();
    for i in [1, 2] {
        approve_change(&net, i, &hash).await?;
    }
    let nonce = B256::repeat_byte(0x4e);
    let body = json!({"amount": WEI, "token": "native", "nonce": nonce});
    let by = format!("node-{BAD}");
    let original = crate::harness::signed_invoice(&net, &shop, body.clone(), old_payout, &by)?;
    let statement = original.statement.clone().ok_or_else(|| eyre!("no statement"))?;
    for i in 0..3 {
        net.eventually("every node holds the invoice", Duration::from_secs(30), || async {
            bad.announce_packed(std::slice::from_ref(&original)).await;
            let path = format!("/v1/invoices/{}", original.id);
            (call(&net, i, Method::GET, &path, &shop, None).await.ok()?.0 == 200).then_some(())
        })
        .await?;
    }

    // The threshold moves the payout address.
    let r = net
        .http
        .patch(format!("{}/admin/v1/merchants/nonce-shop", net.admin(0)))
        .bearer_auth(net.devnet.admin_token.expose())
        .json(&json!({"payout_address": new_payout}))
        .send()
        .await?;
    let change: Value = r.json().await?;
    let hash = change["change_hash"].as_str().ok_or_else(|| eyre!("no hash: {change}"))?.to_string();
    for i in [1, 2] {
        approve_change(&net, i, &hash).await?;
    }
    for i in 0..3 {
        net.eventually("every node pays the new address", Duration::from_secs(30), || async {
            let body = net.on_first_chain(json!({"amount": "1000", "token": "native"}));
            let (status, v) = call(&net, i, Method::POST, "/v1/invoices", &shop, Some(body)).await.ok()?;
            (status == 201 && v["payout_address"].as_str()?.parse::<Address>().ok()? == new_payout).then_some(())
        })
        .await?;
    }

    // The old request replayed under the new address: a sound invoice of another id.
    let terms = settleproof_node::merchants::invoice_record::read(&statement).map_err(|e| eyre!("{e}"))?;
    let replayed = terms.into_invoice(
        statement,
        new_payout,
        net.devnet.deployment.payments,
        (by.clone(), settleproof_node::time::now_s()),
    );
    assert_ne!(replayed.id, original.id);
    bad.answer_fetches_with(replayed.clone());
    for _ in 0..3 {
        assert!(bad.announce_packed(std::slice::from_ref(&replayed)).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for i in 0..3 {
        net.eventually("the replay is refused", Duration::from_secs(20), || async {
            (net.metric(i, "invoices_nonce_taken_total").await >= 1.0).then_some(())
        })
        .await?;
        let path = format!("/v1/invoices/{}", replayed.id);
        assert_eq!(call(&net, i, Method::GET, &path, &shop, None).await?.0, 404, "node {i} keeps the replay");
    }

    // The merchant's own client reusing the nonce, in a new request at another node.
    let (status, refused) = call(&net, 1, Method::POST, "/v1/invoices", &shop, Some(net.on_first_chain(body))).await?;
    assert_eq!((status, refused["error"]["code"].as_str()), (409, Some("nonce_taken")), "{refused}");
    assert!(refused["error"]["message"].as_str().is_some_and(|m| m.contains(&original.id.to_string())), "{refused}");
    net.stop().await;
    Ok(())
}
