//! `aether session ...`: a thin HTTP client for the session routes, text or `--json` output.

use std::collections::BTreeMap;

use aether_domain::{Principal, SessionStatus, TenantId};
use aether_http_client::{ClientConfig, HttpClient, TokenSource};
use aether_ports::*;
use anyhow::{Result, bail};

use crate::cli::SessionCmd;

pub(crate) fn client(endpoint: &str, token: &str) -> Result<(HttpClient, Ctx)> {
    let client = HttpClient::new(ClientConfig::new(
        endpoint,
        TokenSource::Fixed(token.to_owned()),
    ))
    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    // With a fixed token the server decides who we are; the context only carries keys.
    let ctx = Ctx::new(Principal::full_access(
        TenantId::parse("00000000-0000-0000-0000-000000000000").expect("a valid UUID"),
        "aether",
    ));
    Ok((client, ctx))
}

fn api_err(e: aether_domain::Error) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", e.code.as_str(), e.message)
}

fn show(s: &Session, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(s)?);
    } else {
        println!(
            "{}  {}  generation {}  created {}",
            s.id,
            s.status.as_str(),
            s.generation,
            s.created_at
        );
    }
    Ok(())
}

fn tags(raw: &[String]) -> Result<BTreeMap<String, String>> {
    raw.iter()
        .map(|t| match t.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => bail!("--tag {t:?}: expected KEY=VALUE"),
        })
        .collect()
}

pub(crate) async fn run(cmd: &SessionCmd, endpoint: &str, token: &str) -> Result<()> {
    let (api, ctx) = client(endpoint, token)?;
    match cmd {
        SessionCmd::Create { tags: t, json } => {
            let req = CreateSessionRequest {
                initial_tags: tags(t)?,
                ..Default::default()
            };
            let s = api.create_session(&ctx, req).await.map_err(api_err)?;
            show(&s, *json)
        }
        SessionCmd::List { status, tag, json } => {
            let status = status
                .as_deref()
                .map(SessionStatus::parse)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--status: {}", e.message))?;
            let mut token = None;
            let mut all = Vec::new();
            loop {
                let page = api
                    .list_sessions(
                        &ctx,
                        ListSessionsRequest {
                            status,
                            tag: tag.clone(),
                            page: PageRequest {
                                page_size: Some(1000),
                                page_token: token,
                            },
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(api_err)?;
                all.extend(page.items);
                token = page.next_page_token;
                if token.is_none() {
                    break;
                }
            }
            if *json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for s in &all {
                    show(s, false)?;
                }
            }
            Ok(())
        }
        SessionCmd::Show { session_id, json } => {
            let s = api.get_session(&ctx, session_id).await.map_err(api_err)?;
            show(&s, *json)
        }
        SessionCmd::Fork { session_id, json } => {
            let s = api
                .fork_session(&ctx, session_id, ForkSessionRequest::default())
                .await
                .map_err(api_err)?;
            show(&s, *json)
        }
        SessionCmd::Checkpoint {
            session_id,
            name,
            json,
        } => {
            let c = api
                .create_checkpoint(
                    &ctx,
                    session_id,
                    CreateCheckpointRequest { name: name.clone() },
                )
                .await
                .map_err(api_err)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                println!("{}  generation {}", c.id, c.generation);
            }
            Ok(())
        }
        SessionCmd::Restore {
            session_id,
            checkpoint_id,
            json,
        } => {
            let s = api
                .restore_checkpoint(
                    &ctx,
                    session_id,
                    RestoreRequest {
                        checkpoint_id: checkpoint_id.clone(),
                        paths: None,
                    },
                )
                .await
                .map_err(api_err)?;
            show(&s, *json)
        }
        SessionCmd::Archive { session_id, json } => {
            let s = api
                .archive_session(&ctx, session_id)
                .await
                .map_err(api_err)?;
            show(&s, *json)
        }
        SessionCmd::Delete { session_id } => {
            api.delete_session(&ctx, session_id)
                .await
                .map_err(api_err)?;
            println!("deleted {session_id}");
            Ok(())
        }
    }
}
