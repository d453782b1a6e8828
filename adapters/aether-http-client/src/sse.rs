//! A minimal Server-Sent Events reader for the changefeed and the bus: `event:`/`data:`
//! fields, blank-line separated; comments (keep-alives) are skipped.

use futures::StreamExt;

use aether_domain::Error;
use aether_ports::{Event, EventStream};

struct Reader {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

impl Reader {
    /// The next complete message as (event name, data), or `None` at end of stream.
    async fn next_message(&mut self) -> Option<Result<(String, String), Error>> {
        loop {
            if let Some(pos) = find_blank_line(&self.buf) {
                let raw: Vec<u8> = self.buf.drain(..pos.0).collect();
                self.buf.drain(..pos.1 - pos.0);
                let text = String::from_utf8_lossy(&raw);
                let mut event = String::from("message");
                let mut data = Vec::new();
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return Some(Ok((event, data.join("\n"))));
            }
            match self.body.next().await? {
                Ok(chunk) => self.buf.extend_from_slice(&chunk),
                Err(e) => {
                    return Some(Err(Error::unavailable(format!(
                        "changefeed interrupted: {e}"
                    ))));
                }
            }
        }
    }
}

/// Position of the first `\n\n` (or `\r\n\r\n`): (end of message, start of the next).
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|p| (p, p + 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, p + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// The (event name, data) messages of an SSE response.
pub(crate) fn messages(
    resp: reqwest::Response,
) -> futures::stream::BoxStream<'static, Result<(String, String), Error>> {
    let reader = Reader {
        body: resp.bytes_stream().boxed(),
        buf: Vec::new(),
    };
    futures::stream::unfold(reader, |mut r| async move {
        let item = r.next_message().await?;
        Some((item, r))
    })
    .boxed()
}

pub(crate) fn events(resp: reqwest::Response) -> EventStream {
    let reader = Reader {
        body: resp.bytes_stream().boxed(),
        buf: Vec::new(),
    };
    futures::stream::unfold(reader, |mut r| async move {
        let item = match r.next_message().await? {
            Ok((name, data)) if name == "error" => {
                Err(Error::unavailable(format!("changefeed error: {data}")))
            }
            Ok((_, data)) => serde_json::from_str::<Event>(&data)
                .map_err(|e| Error::internal(format!("unreadable changefeed event: {e}"))),
            Err(e) => Err(e),
        };
        Some((item, r))
    })
    .boxed()
}
