//! `aether source ...`: create sources, run and follow imports (a progress bar on a terminal,
//! plain lines otherwise), list, show and promote sessions.

use std::time::Duration;

use aether_http_client::HttpClient;
use aether_ports::*;
use anyhow::{Context, Result, bail};

use crate::cli::SourceCmd;
use crate::session_cmd::{all_pages, api_err, client};

fn show(s: &Source, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(s)?);
    } else {
        println!(
            "{}  {}  {}  {}  revisions {}  latest {}",
            s.id,
            s.display_name,
            s.kind,
            s.status,
            s.revision_count,
            s.latest_revision_id.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

fn job_line(j: &Job) -> String {
    format!(
        "{}  {}  {}  {} files, {} bytes{}",
        j.id,
        j.kind,
        j.state,
        j.files_processed,
        j.bytes_processed,
        j.revision_id
            .as_deref()
            .map(|r| format!("  revision {r}"))
            .unwrap_or_default()
    )
}

fn ended(j: &Job) -> bool {
    j.state.ends_with("_SUCCEEDED") || j.state.ends_with("_FAILED")
}

/// Follows a job to its end: a spinner with counts on a terminal, a line per change otherwise.
async fn follow(api: &HttpClient, ctx: &Ctx, mut job: Job, json: bool) -> Result<Job> {
    let mut progress = crate::progress::Progress::new(json);
    loop {
        progress.update(job_line(&job));
        if ended(&job) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        job = api
            .get_job(ctx, &job.source_id, &job.id)
            .await
            .map_err(api_err)?;
    }
    progress.finish(job_line(&job));
    Ok(job)
}

async fn finish(api: &HttpClient, ctx: &Ctx, job: Job, json: bool) -> Result<()> {
    let job = follow(api, ctx, job, json).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&job)?);
    }
    if job.state.ends_with("_FAILED") {
        bail!(
            "import {} failed: {}: {}",
            job.id,
            job.error_code.as_deref().unwrap_or("UNKNOWN"),
            job.error_message.as_deref().unwrap_or("no message")
        );
    }
    Ok(())
}

async fn upload(api: &HttpClient, ctx: &Ctx, source: &str, path: &std::path::Path) -> Result<Job> {
    let data = std::fs::read(path).with_context(|| format!("read archive {}", path.display()))?;
    api.upload_archive(ctx, source, data.into())
        .await
        .map_err(api_err)
}

pub(crate) async fn run(cmd: &SourceCmd, endpoint: &str, token: &str) -> Result<()> {
    let (api, ctx) = client(endpoint, token)?;
    match cmd {
        SourceCmd::Create {
            name,
            path,
            git_url,
            git_ref,
            bundle_path,
            archive,
            no_import,
            json,
        } => {
            let (kind, origin) = match (path, git_url, bundle_path) {
                (Some(p), _, _) => (
                    "SOURCE_KIND_LOCAL_PATH",
                    SourceOrigin {
                        path: Some(p.clone()),
                        ..Default::default()
                    },
                ),
                (_, Some(u), _) => (
                    "SOURCE_KIND_GIT",
                    SourceOrigin {
                        url: Some(u.clone()),
                        reference: git_ref.clone(),
                        ..Default::default()
                    },
                ),
                (_, _, Some(b)) => (
                    "SOURCE_KIND_GIT_BUNDLE",
                    SourceOrigin {
                        bundle_path: Some(b.clone()),
                        ..Default::default()
                    },
                ),
                _ => ("SOURCE_KIND_ARCHIVE", SourceOrigin::default()),
            };
            let req = CreateSourceRequest {
                display_name: name.clone(),
                kind: kind.to_owned(),
                origin,
                labels: Default::default(),
            };
            let src = api.create_source(&ctx, req).await.map_err(api_err)?;
            if !json {
                show(&src, false)?;
            }
            if *no_import || (kind == "SOURCE_KIND_ARCHIVE" && archive.is_none()) {
                if *json {
                    show(&src, true)?;
                }
                return Ok(());
            }
            let job = match archive {
                Some(a) => upload(&api, &ctx, &src.id, a).await?,
                None => api.start_import(&ctx, &src.id).await.map_err(api_err)?,
            };
            finish(&api, &ctx, job, *json).await
        }
        SourceCmd::Import {
            source_id,
            archive,
            refresh,
            json,
        } => {
            let job = match (archive, refresh) {
                (Some(a), _) => upload(&api, &ctx, source_id, a).await?,
                (None, true) => api.refresh_source(&ctx, source_id).await.map_err(api_err)?,
                (None, false) => api.start_import(&ctx, source_id).await.map_err(api_err)?,
            };
            finish(&api, &ctx, job, *json).await
        }
        SourceCmd::List { json } => {
            let all = all_pages(|page| api.list_sources(&ctx, ListSourcesRequest { page })).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for s in &all {
                    show(s, false)?;
                }
            }
            Ok(())
        }
        SourceCmd::Show { source_id, json } => {
            let s = api.get_source(&ctx, source_id).await.map_err(api_err)?;
            show(&s, *json)
        }
        SourceCmd::Promote {
            source_id,
            session_id,
            json,
        } => {
            let job = api
                .promote_session(
                    &ctx,
                    source_id,
                    PromoteSessionRequest {
                        session_id: session_id.clone(),
                    },
                )
                .await
                .map_err(api_err)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&job)?);
            } else {
                println!("{}", job_line(&job));
            }
            Ok(())
        }
    }
}
