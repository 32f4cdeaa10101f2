//! What merchants do for themselves, end to end: idempotent invoice creation across nodes.

use crate::harness::Testnet;
use eyre::{Result, eyre};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idempotent_retry_on_another_node_returns_the_same_invoice_and_a_changed_body_is_a_409() -> Result<()> {
    let net = Testnet::start(4).await?;
    let body =
        json!({"amount": "1000000000000000", "token": "native", "expires_in": 3600, "metadata": {"order": "I-1"}});
    let (status, replayed, first) = net.create_invoice_with_key(0, "order-I-1", body.clone()).await?;
    assert_eq!((status, replayed), (201, false), "{first}");
    let id = first["id"].as_str().ok_or_else(|| eyre!("no id"))?.to_string();
    // The retry reaches another node once the invoice (and its key) replicated there.
    net.eventually("invoice replicated", Duration::from_secs(15), || async {
        matches!(net.get_invoice(1, &id).await, Ok((200, _))).then_some(())
    })
    .await?;
    let (status, replayed, again) = net.create_invoice_with_key(1, "order-I-1", body.clone()).await?;
    assert_eq!((status, replayed), (201, true), "{again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["expires_at"], first["expires_at"]);
    let changed =
        json!({"amount": "2000000000000000", "token": "native", "expires_in": 3600, "metadata": {"order": "I-1"}});
    let (status, _, conflict) = net.create_invoice_with_key(1, "order-I-1", changed).await?;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(conflict["error"]["field"], "amount", "{conflict}");

    // With an absolute expiry, a retry sent at once to another node builds the same invoice
    // whether or not the first has reached it.
    let at = first["expires_at"].as_u64().ok_or_else(|| eyre!("no expiry"))?;
    let exact = json!({"amount": "3000000000000000", "token": "native", "expires_at": at});
    let (_, _, on_2) = net.create_invoice_with_key(2, "order-I-2", exact.clone()).await?;
    let (status, _, on_3) = net.create_invoice_with_key(3, "order-I-2", exact).await?;
    assert_eq!(status, 201, "{on_3}");
    assert_eq!(on_3["id"], on_2["id"]);

    // The one invoice is paid, settled and notified like any other.
    net.pay(&again).await?;
    net.eventually("invoice.paid for the idempotent invoice", Duration::from_secs(90), || async {
        net.receiver
            .snapshot()
            .into_iter()
            .any(|r| r.body["type"] == "invoice.paid" && r.body["data"]["invoice"]["id"] == id.as_str())
            .then_some(())
    })
    .await?;
    net.stop().await;
    Ok(())
}
