//! Bus use cases: publish (stored in a bounded per-session tail, then fanned out) and
//! subscribe (replay of retained matching messages, then live ones). A slow subscriber only
//! ever lags its own channel: publishers never wait for it, and it is told what it missed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tokio::sync::broadcast::{self, error::RecvError};

use aether_domain::bus::{Glob, check_headers, check_topic};
use aether_domain::{Error, Reason, Result, Scope, SessionId, SessionStatus};
use aether_ports::store::{BlobStore, BusStore, Environment, MetadataStore};
use aether_ports::*;

use crate::Service;

/// Messages a subscriber may fall behind by before it starts missing some.
const SUBSCRIBER_BUFFER: usize = 1024;
/// The most a subscriber may ask to replay.
const MAX_REPLAY: u32 = 10_000;

/// Live fan-out: one broadcast channel per session with subscribers.
#[derive(Default)]
pub(crate) struct Fanout {
    channels: Mutex<HashMap<SessionId, broadcast::Sender<Arc<BusMessage>>>>,
}

impl Fanout {
    fn sender(&self, session: &SessionId) -> broadcast::Sender<Arc<BusMessage>> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(session.clone())
            .or_insert_with(|| broadcast::channel(SUBSCRIBER_BUFFER).0)
            .clone()
    }

    /// Sends to the session's subscribers, forgetting the channel once nobody listens.
    fn send(&self, session: &SessionId, message: Arc<BusMessage>) {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = map.get(session)
            && tx.send(message).is_err()
        {
            map.remove(session);
        }
    }
}

impl<M: MetadataStore + BusStore, B: BlobStore, E: Environment> BusApi for Service<M, B, E> {
    async fn publish(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: PublishRequest,
    ) -> Result<BusMessage> {
        let rec = self.authorize(ctx, Scope::SessionWrite, session_id).await?;
        if matches!(
            rec.status,
            SessionStatus::Archived | SessionStatus::Archiving
        ) {
            return Err(Error::precondition(format!(
                "session {session_id} is {}; its bus takes no messages",
                rec.status.as_str()
            ))
            .with_reason(Reason::InvalidState));
        }
        check_topic(&req.topic)?;
        check_headers(req.headers.iter())?;
        let limit = self.inner.limits.max_bus_payload_bytes;
        if req.payload.len() > limit {
            return Err(Error::invalid(format!(
                "payload is {} bytes; the limit is {limit}",
                req.payload.len()
            )));
        }
        let message = BusMessage {
            sequence: 0,
            session_id: rec.id.as_str().to_owned(),
            topic: req.topic,
            payload: req.payload,
            headers: req.headers,
            published_by: ctx.principal.name.clone(),
            published_at: self.inner.env.now(),
        };
        let stored = self
            .inner
            .meta
            .bus_append(&rec.id, message, self.inner.limits.bus_retention)
            .await?;
        self.inner.fanout.send(&rec.id, Arc::new(stored.clone()));
        Ok(stored)
    }

    async fn subscribe(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: SubscribeRequest,
    ) -> Result<BusStream> {
        let rec = self.authorize(ctx, Scope::SessionRead, session_id).await?;
        match req.scope.as_deref() {
            None | Some("SESSION_ONLY") => {}
            Some(other) => {
                return Err(Error::invalid(format!(
                    "scope {other:?} is not supported; the bus scope is SESSION_ONLY"
                )));
            }
        }
        let globs: Vec<Glob> = if req.topics.is_empty() {
            vec![Glob::parse("*")?]
        } else {
            req.topics
                .iter()
                .map(|t| Glob::parse(t))
                .collect::<Result<_>>()?
        };
        let replay = req.replay_limit.unwrap_or(0);
        if replay > MAX_REPLAY {
            return Err(Error::invalid(format!(
                "replayLimit {replay} is above {MAX_REPLAY}"
            )));
        }
        let wanted = move |m: &BusMessage| globs.iter().any(|g| g.matches(&m.topic));
        // Listen before reading the tail, so nothing published in between is lost; what both
        // hold is delivered once, by sequence.
        let rx = self.inner.fanout.sender(&rec.id).subscribe();
        let retained: Vec<BusMessage> = self
            .inner
            .meta
            .bus_retained(&rec.id)
            .await?
            .into_iter()
            .filter(&wanted)
            .collect();
        let skip = retained.len().saturating_sub(replay as usize);
        let replayed: Vec<BusMessage> = retained.into_iter().skip(skip).collect();
        let after = replayed.last().map_or(0, |m| m.sequence);
        let live = futures::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Ok(m) => Some((Ok(m), rx)),
                Err(RecvError::Lagged(n)) => Some((Err(n), rx)),
                Err(RecvError::Closed) => None,
            }
        })
        .filter_map(move |item| {
            let out = match item {
                Ok(m) if m.sequence > after && wanted(&m) => {
                    Some(Ok(BusDelivery::Message((*m).clone())))
                }
                Ok(_) => None,
                Err(n) => Some(Ok(BusDelivery::Missed { count: n })),
            };
            futures::future::ready(out)
        });
        let first =
            futures::stream::iter(replayed.into_iter().map(|m| Ok(BusDelivery::Message(m))));
        Ok(first.chain(live).boxed())
    }
}
