//! `settleproof merchants ...`: the merchant registry through the running node's admin API.

use eyre::{Context, Result, bail};
use serde_json::{Value, json};
use settleproof_config::NodeConfig;
use settleproof_node::cli::MerchantsCommand;

/// Runs one `merchants` subcommand and prints the node's answer.
pub async fn run(cmd: MerchantsCommand) -> Result<()> {
    let (config, method, path, body) = match cmd {
        MerchantsCommand::List { config } => (config, reqwest::Method::GET, "merchants".to_string(), None),
        MerchantsCommand::Create { config, id, payout_address, webhook_url, webhook_secret_env, root_key } => {
            let secret = secret_from(&webhook_secret_env)?;
            let body = json!({
                "id": id,
                "payout_address": payout_address,
                "webhook_url": webhook_url,
                "webhook_secret": secret,
                "root_key": root_key,
            });
            (config, reqwest::Method::POST, "merchants".to_string(), Some(body))
        }
        MerchantsCommand::Update {
            config,
            id,
            payout_address,
            webhook_url,
            webhook_secret_env,
            root_key,
            disabled,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(a) = payout_address {
                body.insert("payout_address".into(), json!(a));
            }
            if let Some(u) = webhook_url {
                body.insert("webhook_url".into(), json!(u));
            }
            if let Some(var) = webhook_secret_env {
                body.insert("webhook_secret".into(), json!(secret_from(&var)?));
            }
            if let Some(k) = root_key {
                body.insert("root_key".into(), json!(k));
            }
            if let Some(d) = disabled {
                body.insert("disabled".into(), json!(d));
            }
            if body.is_empty() {
                bail!(
                    "give at least one of --payout-address, --webhook-url, --webhook-secret-env, --root-key, --disabled"
                );
            }
            (config, reqwest::Method::PATCH, format!("merchants/{id}"), Some(Value::Object(body)))
        }
        MerchantsCommand::Approve { config, change_hash } => {
            (config, reqwest::Method::POST, format!("merchant-changes/{change_hash}/approve"), None)
        }
    };
    let cfg = NodeConfig::load(&config, std::env::vars()).wrap_err("cannot load the configuration")?;
    let Some(admin) = cfg.admin.as_ref() else {
        bail!("the configuration has no [admin] section: the node serves no admin API")
    };
    let url = format!("http://{}/admin/v1/{path}", admin.listen_addr(cfg.api.listen));
    let mut req = reqwest::Client::new().request(method, url).bearer_auth(admin.token.expose());
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.wrap_err("cannot reach the node's admin API (is the node running?)")?;
    let status = resp.status();
    let answer: Value = resp.json().await.unwrap_or_default();
    println!("{}", serde_json::to_string_pretty(&answer)?);
    if !status.is_success() {
        bail!("the node refused ({status})");
    }
    Ok(())
}

fn secret_from(var: &str) -> Result<String> {
    std::env::var(var).wrap_err_with(|| {
        format!(
            "set the webhook secret in the environment variable {var} (`settleproof keys webhook-secret` makes one)"
        )
    })
}
