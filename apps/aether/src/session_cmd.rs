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

/// Every item of a paginated listing, fetched 1,000 at a time.
pub(crate) async fn all_pages<T, F, Fut>(mut fetch: F) -> Result<Vec<T>>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = aether_domain::Result<Page<T>>>,
{
    let mut all = Vec::new();
    let mut token = None;
    loop {
        let page = fetch(PageRequest {
            page_size: Some(1000),
            page_token: token,
        })
        .await
        .map_err(api_err)?;
        all.extend(page.items);
        token = page.next_page_token;
        if token.is_none() {
            return Ok(all);
        }
    }
}

pub(crate) fn api_err(e: aether_domain::Error) -> anyhow::Error {
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

fn show_approval(a: &Approval, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(a)?);
    } else {
        let decided = a
            .decided_by
            .as_deref()
            .map(|d| format!("  decided by {d}"))
            .unwrap_or_default();
        println!(
            "{}  {}  {}  generation {}  requested by {}{decided}",
            a.id, a.status, a.reason, a.generation, a.requested_by
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
        SessionCmd::Create {
            tags: t,
            source_id,
            revision_id,
            json,
        } => {
            let req = CreateSessionRequest {
                initial_tags: tags(t)?,
                source_ref: source_id.as_ref().map(|id| SourceRef {
                    source_id: id.clone(),
                    revision_id: revision_id.clone(),
                }),
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
            let all = all_pages(|page| {
                api.list_sessions(
                    &ctx,
                    ListSessionsRequest {
                        status,
                        tag: tag.clone(),
                        page,
                        ..Default::default()
                    },
                )
            })
            .await?;
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
        SessionCmd::RequestApproval {
            session_id,
            reason,
            details,
            json,
        } => {
            let details = details
                .as_deref()
                .map(serde_json::from_str::<serde_json::Value>)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--details is not JSON: {e}"))?;
            let req = RequestApprovalRequest {
                reason: reason.clone(),
                details,
            };
            let a = api
                .request_approval(&ctx, session_id, req)
                .await
                .map_err(api_err)?;
            show_approval(&a, *json)
        }
        SessionCmd::Approve {
            session_id,
            approval_id,
            comment,
            json,
        } => {
            let req = DecideApprovalRequest {
                comment: comment.clone(),
            };
            let a = api
                .grant_approval(&ctx, session_id, approval_id, req)
                .await
                .map_err(api_err)?;
            show_approval(&a, *json)
        }
        SessionCmd::Deny {
            session_id,
            approval_id,
            comment,
            json,
        } => {
            let req = DecideApprovalRequest {
                comment: comment.clone(),
            };
            let a = api
                .deny_approval(&ctx, session_id, approval_id, req)
                .await
                .map_err(api_err)?;
            show_approval(&a, *json)
        }
        SessionCmd::Approvals { session_id, json } => {
            let all = all_pages(|page| api.list_approvals(&ctx, session_id, page)).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for a in &all {
                    show_approval(a, false)?;
                }
            }
            Ok(())
        }
        SessionCmd::Commit {
            session_id,
            message,
            author,
            json,
        } => {
            let req = CommitRequest {
                message: message.clone(),
                author: author.clone(),
            };
            let c = api.commit(&ctx, session_id, req).await.map_err(api_err)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                println!(
                    "{}  generation {}  checkpoint {}  {}",
                    c.id,
                    c.generation,
                    c.checkpoint_id,
                    c.message.lines().next().unwrap_or_default()
                );
            }
            Ok(())
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
