//! Message bus types (SPEC §4.2): messages published on a session's topics, and what a
//! subscriber receives: retained and live messages, or how many it missed by falling behind.

use std::collections::BTreeMap;
use std::pin::Pin;

use futures::Stream;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use aether_domain::Timestamp;

use crate::serde_helpers as h;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishRequest {
    pub topic: String,
    #[serde(with = "h::base64_bytes")]
    #[schemars(with = "String")]
    pub payload: Vec<u8>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BusMessage {
    /// Grows by one with every message of the session, whatever its topic.
    pub sequence: u64,
    pub session_id: String,
    pub topic: String,
    #[serde(with = "h::base64_bytes")]
    #[schemars(with = "String")]
    pub payload: Vec<u8>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub published_by: String,
    #[serde(with = "h::timestamp")]
    #[schemars(with = "String")]
    pub published_at: Timestamp,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeRequest {
    /// Topic globs such as `tests:*`; every topic when empty.
    #[serde(default)]
    pub topics: Vec<String>,
    /// `SESSION_ONLY` (the default and the only scope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// How many retained matching messages to replay first (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_limit: Option<u32>,
}

/// What a subscription delivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BusDelivery {
    Message(BusMessage),
    /// The subscriber fell behind and `count` messages (of any topic) went past it.
    Missed {
        count: u64,
    },
}

pub type BusStream = Pin<Box<dyn Stream<Item = crate::Result<BusDelivery>> + Send + 'static>>;
