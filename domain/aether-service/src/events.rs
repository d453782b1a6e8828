//! The activity log: paginated queries and the live changefeed.

use futures::StreamExt;
use tokio::sync::broadcast::error::RecvError;

use aether_domain::{Error, Result, Scope, SessionId, TenantId};
use aether_ports::plan;
use aether_ports::store::{BlobStore, Environment, EventQuery, MetadataStore};
use aether_ports::*;

use crate::Service;

const FOLLOW_BATCH: usize = 256;

impl<M: MetadataStore, B: BlobStore, E: Environment> EventsApi for Service<M, B, E> {
    async fn list_events(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: ListEventsRequest,
    ) -> Result<Page<Event>> {
        let rec = self.authorize(ctx, Scope::SessionRead, session_id).await?;
        let limit = req.page.size()?;
        let from_token = match &req.page.page_token {
            Some(t) => Some(
                plan::decode_token("events", t)?
                    .parse::<u64>()
                    .map_err(|_| Error::invalid("pageToken is not a token of this list"))?,
            ),
            None => None,
        };
        if let (Some(s), Some(u)) = (req.since, req.until)
            && s > u
        {
            return Err(Error::invalid("since is after until"));
        }
        let query = EventQuery {
            after_sequence: from_token.or(req.after_sequence).unwrap_or(0),
            since: req.since,
            until: req.until,
            types: req.types,
            limit: limit + 1,
        };
        let mut items = self.inner.meta.events(&rec.tenant, &rec.id, &query).await?;
        let more = items.len() > limit;
        items.truncate(limit);
        let next_page_token = more.then(|| {
            plan::encode_token(
                "events",
                &items.last().map_or(0, |e| e.sequence).to_string(),
            )
        });
        Ok(Page {
            items,
            next_page_token,
        })
    }

    async fn follow_events(
        &self,
        ctx: &Ctx,
        session_id: &str,
        after_sequence: u64,
    ) -> Result<EventStream> {
        let rec = self.authorize(ctx, Scope::SessionRead, session_id).await?;
        let follower = Follower {
            service: self.clone(),
            tenant: rec.tenant,
            session: rec.id,
            after: after_sequence,
            wake: self.inner.appended.subscribe(),
            backlog: std::collections::VecDeque::new(),
        };
        Ok(futures::stream::unfold(follower, |mut f| async move {
            let item = f.next().await;
            item.map(|i| (i, f))
        })
        .fuse()
        .boxed())
    }
}

struct Follower<M, B, E> {
    service: Service<M, B, E>,
    tenant: TenantId,
    session: SessionId,
    after: u64,
    wake: tokio::sync::broadcast::Receiver<SessionId>,
    backlog: std::collections::VecDeque<Event>,
}

impl<M: MetadataStore, B: BlobStore, E: Environment> Follower<M, B, E> {
    /// The next event, waiting for one to be appended; `None` once the session is gone.
    async fn next(&mut self) -> Option<Result<Event>> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                self.after = e.sequence;
                return Some(Ok(e));
            }
            let query = EventQuery {
                after_sequence: self.after,
                limit: FOLLOW_BATCH,
                ..EventQuery::default()
            };
            match self
                .service
                .inner
                .meta
                .events(&self.tenant, &self.session, &query)
                .await
            {
                Ok(batch) if !batch.is_empty() => {
                    self.backlog.extend(batch);
                    continue;
                }
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
            match self
                .service
                .inner
                .meta
                .session(&self.tenant, &self.session)
                .await
            {
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            }
            // Wait until this session's log grows; a lagged receiver just re-reads the store.
            loop {
                match self.wake.recv().await {
                    Ok(id) if id == self.session => break,
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    }
}
