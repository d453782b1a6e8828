//! `BusApi` over HTTP: publish, and subscribe as Server-Sent Events.

use futures::StreamExt;
use reqwest::{Method, header};

use aether_domain::Error;
use aether_ports::*;

use crate::HttpClient;

impl BusApi for HttpClient {
    async fn publish(&self, ctx: &Ctx, id: &str, req: PublishRequest) -> Result<BusMessage> {
        self.post(ctx, &Self::session_path(id, "/bus:publish"), &req)
            .await
    }

    async fn subscribe(&self, ctx: &Ctx, id: &str, req: SubscribeRequest) -> Result<BusStream> {
        let mut q: Vec<(&str, String)> = Vec::new();
        if !req.topics.is_empty() {
            q.push(("topics", req.topics.join(",")));
        }
        if let Some(s) = req.scope {
            q.push(("scope", s));
        }
        if let Some(n) = req.replay_limit {
            q.push(("replayLimit", n.to_string()));
        }
        let rb = self
            .request(ctx, Method::GET, &Self::session_path(id, "/bus"))?
            .header(header::ACCEPT, "text/event-stream")
            .query(&q)
            // A subscription lasts as long as its reader wants it.
            .timeout(std::time::Duration::from_secs(365 * 24 * 3600));
        let resp = self.send(rb).await?;
        Ok(crate::sse::messages(resp)
            .map(|m| match m {
                Ok((name, data)) if name == "missed" => {
                    let v: serde_json::Value = serde_json::from_str(&data).unwrap_or_default();
                    Ok(BusDelivery::Missed {
                        count: v["count"].as_u64().unwrap_or(0),
                    })
                }
                Ok((name, data)) if name == "error" => Err(Error::unavailable(format!(
                    "bus subscription error: {data}"
                ))),
                Ok((_, data)) => serde_json::from_str::<BusMessage>(&data)
                    .map(BusDelivery::Message)
                    .map_err(|e| Error::internal(format!("unreadable bus message: {e}"))),
                Err(e) => Err(e),
            })
            .boxed())
    }
}
