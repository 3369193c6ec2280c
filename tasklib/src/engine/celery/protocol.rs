//! Celery's message protocol v2, as kombu lays it out on Redis: one JSON envelope per list
//! element, the body `[args, kwargs, embed]` base64-encoded inside it.
//!
//! Facts pinned by the golden tests below (a change here can break interop with Python
//! workers silently, so change the tests only with a real Celery run to back it):
//! - `properties.delivery_tag` and `properties.delivery_info.{exchange, routing_key}` are
//!   required: without them kombu raises `KeyError` and the message is lost.
//! - `headers.timelimit` is `[hard, soft]` in seconds (`celery/app/amqp.py`, `as_task_v2`).
//! - A queue is a list; priorities go to buckets `queue`, `queue\x06\x163`, `…6`, `…9`, and on
//!   Redis **0 is the highest** priority (consumers list the buckets in ascending order).
//! - `embed.chain` holds the steps still to run, the next one **last**.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Between a queue's name and its priority bucket (kombu's `sep`).
pub(crate) const PRIORITY_SEPARATOR: &str = "\x06\x16";
/// kombu's `priority_steps`: the buckets a priority 0..=9 falls into.
pub(crate) const PRIORITY_STEPS: [u8; 4] = [0, 3, 6, 9];
/// The lowest priority Celery knows on Redis (9; 0 is the highest).
pub(crate) const LOWEST_PRIORITY: u8 = 9;
/// Header carrying tasklib's retry budget (Celery keeps it on the task class, not the
/// message); Celery workers ignore it.
pub(crate) const MAX_RETRIES_HEADER: &str = "tasklib_max_retries";
/// Header counting the times a task snoozed (`TaskError::snooze`), which use no retry but are
/// attempts; Celery workers ignore it.
pub(crate) const SNOOZES_HEADER: &str = "tasklib_snoozes";
/// Header carrying a chain step's position, set by tasklib (Celery has none).
pub(crate) const STEP_HEADER: &str = "tasklib_chain_step";
/// Header carrying the W3C `traceparent` of the submitter's span (feature `otel`), under the
/// W3C header's own name, as OpenTelemetry's propagators write it into a carrier; Celery
/// workers without tracing ignore it.
pub(crate) const TRACEPARENT_HEADER: &str = "traceparent";

/// One message as it sits in a Redis list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// The body JSON, base64-encoded when `properties.body_encoding` says so.
    pub(crate) body: String,
    #[serde(rename = "content-encoding", default = "utf8")]
    pub(crate) content_encoding: String,
    #[serde(rename = "content-type", default = "json")]
    pub(crate) content_type: String,
    pub(crate) headers: Headers,
    pub(crate) properties: Properties,
}

fn utf8() -> String {
    "utf-8".to_owned()
}

fn json() -> String {
    "application/json".to_owned()
}

/// The v2 headers (`celery/app/amqp.py`, `as_task_v2`), in Celery's order; headers tasklib
/// does not know are kept as they came.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Headers {
    #[serde(default)]
    pub(crate) lang: Option<String>,
    pub(crate) task: String,
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) shadow: Option<String>,
    #[serde(default)]
    pub(crate) eta: Option<String>,
    #[serde(default)]
    pub(crate) expires: Option<String>,
    #[serde(default)]
    pub(crate) group: Option<String>,
    #[serde(default)]
    pub(crate) group_index: Option<u32>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) retries: u32,
    /// `[hard, soft]` time limits in seconds.
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) timelimit: [Option<f64>; 2],
    #[serde(default)]
    pub(crate) root_id: Option<String>,
    #[serde(default)]
    pub(crate) parent_id: Option<String>,
    #[serde(default)]
    pub(crate) argsrepr: Option<String>,
    #[serde(default)]
    pub(crate) kwargsrepr: Option<String>,
    #[serde(default)]
    pub(crate) origin: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) ignore_result: bool,
    /// Everything else (`stamps`, `redelivered`, tasklib's own headers...).
    #[serde(flatten)]
    pub(crate) extra: Map<String, Value>,
}

/// The AMQP-style properties kombu keeps beside the headers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Properties {
    #[serde(default)]
    pub(crate) correlation_id: Option<String>,
    #[serde(default)]
    pub(crate) reply_to: Option<String>,
    #[serde(default = "persistent")]
    pub(crate) delivery_mode: u8,
    pub(crate) delivery_info: DeliveryInfo,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) priority: u8,
    #[serde(default)]
    pub(crate) body_encoding: Option<String>,
    pub(crate) delivery_tag: String,
    #[serde(flatten)]
    pub(crate) extra: Map<String, Value>,
}

/// Python sends `None` for some fields Celery itself fills in later: read it as the default.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn persistent() -> u8 {
    2
}

/// Where the message was routed: the exchange (empty: the default, direct to the queue) and
/// the routing key (the queue's name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DeliveryInfo {
    pub(crate) exchange: String,
    pub(crate) routing_key: String,
    #[serde(flatten)]
    pub(crate) extra: Map<String, Value>,
}

/// The decoded body: positional arguments, keyword arguments, and what runs next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Body(
    pub(crate) Vec<Value>,
    pub(crate) Map<String, Value>,
    pub(crate) Embed,
);

/// Callbacks and the chain carried by a message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Embed {
    #[serde(default)]
    pub(crate) callbacks: Option<Value>,
    #[serde(default)]
    pub(crate) errbacks: Option<Value>,
    /// The steps still to run, the next one last.
    #[serde(default)]
    pub(crate) chain: Option<Vec<Signature>>,
    #[serde(default)]
    pub(crate) chord: Option<Value>,
}

/// A task call that has not been sent yet (Celery's `Signature` as a dict).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Signature {
    pub(crate) task: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) args: Vec<Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) kwargs: Map<String, Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) options: Map<String, Value>,
    #[serde(default)]
    pub(crate) subtask_type: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) immutable: bool,
    #[serde(default)]
    pub(crate) chord_size: Option<u32>,
}

/// What a message is to become, before it is encoded.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) task: String,
    pub(crate) id: String,
    pub(crate) queue: String,
    /// Celery's priority, 0 (highest on Redis) to 9.
    pub(crate) priority: u8,
    pub(crate) args: Vec<Value>,
    pub(crate) kwargs: Map<String, Value>,
    pub(crate) chain: Option<Vec<Signature>>,
    pub(crate) eta: Option<DateTime<Utc>>,
    pub(crate) retries: u32,
    pub(crate) timelimit: [Option<f64>; 2],
    pub(crate) root_id: String,
    pub(crate) parent_id: Option<String>,
    pub(crate) origin: String,
    /// Headers besides Celery's own.
    pub(crate) extra_headers: Map<String, Value>,
    /// The delivery tag (a fresh UUID per publish).
    pub(crate) delivery_tag: String,
}

/// A message read from a queue, decoded.
#[derive(Debug, Clone)]
pub(crate) struct Incoming {
    pub(crate) envelope: Envelope,
    pub(crate) body: Body,
}

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("the envelope is not a Celery message v2: {0}")]
    Envelope(#[source] serde_json::Error),
    #[error("the body is not valid base64")]
    Base64(#[source] base64::DecodeError),
    #[error("the body is not `[args, kwargs, embed]`: {0}")]
    Body(#[source] serde_json::Error),
    #[error("content type `{0}` is not JSON (tasklib reads only JSON messages)")]
    ContentType(String),
}

impl Outgoing {
    /// The envelope JSON, as `LPUSH`ed.
    pub(crate) fn encode(&self) -> Result<String, serde_json::Error> {
        let embed = Embed {
            callbacks: None,
            errbacks: None,
            chain: self.chain.clone().filter(|c| !c.is_empty()),
            chord: None,
        };
        let body = Body(self.args.clone(), self.kwargs.clone(), embed);
        let body_json = serde_json::to_string(&body)?;
        let envelope = Envelope {
            body: BASE64.encode(body_json),
            content_encoding: utf8(),
            content_type: json(),
            headers: Headers {
                lang: Some("rust".to_owned()),
                task: self.task.clone(),
                id: self.id.clone(),
                shadow: None,
                eta: self.eta.map(format_time),
                expires: None,
                group: None,
                group_index: None,
                retries: self.retries,
                timelimit: self.timelimit,
                root_id: Some(self.root_id.clone()),
                parent_id: self.parent_id.clone(),
                argsrepr: Some(python_repr_list(&self.args)),
                kwargsrepr: Some(python_repr_map(&self.kwargs)),
                origin: Some(self.origin.clone()),
                ignore_result: false,
                extra: self.extra_headers.clone(),
            },
            properties: Properties {
                correlation_id: Some(self.id.clone()),
                reply_to: Some(String::new()),
                delivery_mode: persistent(),
                delivery_info: DeliveryInfo {
                    exchange: String::new(),
                    routing_key: self.queue.clone(),
                    extra: Map::new(),
                },
                priority: self.priority,
                body_encoding: Some("base64".to_owned()),
                delivery_tag: self.delivery_tag.clone(),
                extra: Map::new(),
            },
        };
        serde_json::to_string(&envelope)
    }

    /// The Redis list this message goes to.
    pub(crate) fn list_key(&self) -> String {
        list_key(&self.queue, self.priority)
    }
}

impl Incoming {
    /// Decodes one list element.
    pub(crate) fn decode(raw: &str) -> Result<Incoming, DecodeError> {
        let envelope: Envelope = serde_json::from_str(raw).map_err(DecodeError::Envelope)?;
        if !envelope.content_type.contains("json") {
            return Err(DecodeError::ContentType(envelope.content_type));
        }
        let body = if envelope.properties.body_encoding.as_deref() == Some("base64") {
            let bytes = BASE64
                .decode(envelope.body.as_bytes())
                .map_err(DecodeError::Base64)?;
            serde_json::from_slice(&bytes).map_err(DecodeError::Body)?
        } else {
            serde_json::from_str(&envelope.body).map_err(DecodeError::Body)?
        };
        Ok(Incoming { envelope, body })
    }

    /// The time before which the task must not start, if any.
    pub(crate) fn eta(&self) -> Option<DateTime<Utc>> {
        self.envelope.headers.eta.as_deref().and_then(parse_time)
    }
}

/// The list of `queue` for a Celery priority (kombu's `_q_for_pri`).
pub(crate) fn list_key(queue: &str, priority: u8) -> String {
    match bucket(priority) {
        0 => queue.to_owned(),
        step => format!("{queue}{PRIORITY_SEPARATOR}{step}"),
    }
}

/// The bucket a priority falls into: the largest step not above it (kombu's `priority`).
pub(crate) fn bucket(priority: u8) -> u8 {
    PRIORITY_STEPS
        .iter()
        .copied()
        .filter(|step| *step <= priority)
        .max()
        .unwrap_or(0)
}

/// Every list a consumer of `queues` pops, in the order kombu does: highest priority bucket
/// first, queues in order within a bucket.
pub(crate) fn consume_keys(queues: &[String]) -> Vec<String> {
    PRIORITY_STEPS
        .iter()
        .flat_map(|step| queues.iter().map(move |q| list_key(q, *step)))
        .collect()
}

/// ISO 8601 with microseconds and an offset, as Python's `isoformat()` writes an aware time.
pub(crate) fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, false)
}

/// Reads an ISO 8601 time; one without an offset is taken as UTC (Celery with
/// `enable_utc`, its default).
pub(crate) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

/// A Python-looking repr of arguments, for `argsrepr` (Celery shows it in logs and
/// monitoring only).
fn python_repr_list(args: &[Value]) -> String {
    let items: Vec<String> = args.iter().map(python_repr).collect();
    if items.len() == 1 {
        format!("({},)", items[0])
    } else {
        format!("({})", items.join(", "))
    }
}

fn python_repr_map(kwargs: &Map<String, Value>) -> String {
    let items: Vec<String> = kwargs
        .iter()
        .map(|(k, v)| format!("'{k}': {}", python_repr(v)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

fn python_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{s}'"),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(python_repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => python_repr_map(map),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn add(eta: Option<DateTime<Utc>>) -> Outgoing {
        let mut extra_headers = Map::new();
        extra_headers.insert(MAX_RETRIES_HEADER.to_owned(), json!(3));
        Outgoing {
            task: "add_numbers".into(),
            id: "0190d6a2-0000-7000-8000-000000000001".into(),
            queue: "default".into(),
            priority: 0,
            args: vec![],
            kwargs: json!({"a": 4, "b": 5})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            chain: None,
            eta,
            retries: 0,
            timelimit: [Some(30.0), None],
            root_id: "0190d6a2-0000-7000-8000-000000000001".into(),
            parent_id: None,
            origin: "tasklib@host".into(),
            extra_headers,
            delivery_tag: "7d0f5e6c-0000-4000-8000-000000000002".into(),
        }
    }

    /// The exact envelope a Celery 5.7 worker ran (checked against a real one in the
    /// integration tests); every required key is there.
    #[test]
    fn golden_envelope() -> Result<(), Box<dyn std::error::Error>> {
        let eta = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single();
        let encoded = add(eta).encode()?;
        let expected = r#"{"body":"W1tdLHsiYSI6NCwiYiI6NX0seyJjYWxsYmFja3MiOm51bGwsImVycmJhY2tzIjpudWxsLCJjaGFpbiI6bnVsbCwiY2hvcmQiOm51bGx9XQ==","content-encoding":"utf-8","content-type":"application/json","headers":{"lang":"rust","task":"add_numbers","id":"0190d6a2-0000-7000-8000-000000000001","shadow":null,"eta":"2026-01-02T03:04:05.000000+00:00","expires":null,"group":null,"group_index":null,"retries":0,"timelimit":[30.0,null],"root_id":"0190d6a2-0000-7000-8000-000000000001","parent_id":null,"argsrepr":"()","kwargsrepr":"{'a': 4, 'b': 5}","origin":"tasklib@host","ignore_result":false,"tasklib_max_retries":3},"properties":{"correlation_id":"0190d6a2-0000-7000-8000-000000000001","reply_to":"","delivery_mode":2,"delivery_info":{"exchange":"","routing_key":"default"},"priority":0,"body_encoding":"base64","delivery_tag":"7d0f5e6c-0000-4000-8000-000000000002"}}"#;
        assert_eq!(encoded, expected);
        let body = BASE64.decode("W1tdLHsiYSI6NCwiYiI6NX0seyJjYWxsYmFja3MiOm51bGwsImVycmJhY2tzIjpudWxsLCJjaGFpbiI6bnVsbCwiY2hvcmQiOm51bGx9XQ==")?;
        assert_eq!(
            std::str::from_utf8(&body)?,
            r#"[[],{"a":4,"b":5},{"callbacks":null,"errbacks":null,"chain":null,"chord":null}]"#
        );
        let decoded = Incoming::decode(&encoded)?;
        assert_eq!(decoded.eta(), eta);
        assert_eq!(decoded.body.1.get("a"), Some(&json!(4)));
        assert_eq!(
            decoded.envelope.properties.delivery_info.routing_key,
            "default"
        );
        Ok(())
    }

    #[test]
    fn golden_chain_body() -> Result<(), Box<dyn std::error::Error>> {
        let mut message = add(None);
        message.chain = Some(vec![Signature {
            task: "add_numbers".into(),
            args: vec![json!(1)],
            kwargs: Map::new(),
            options: json!({"task_id": "c", "queue": "default"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            subtask_type: None,
            immutable: false,
            chord_size: None,
        }]);
        let decoded = Incoming::decode(&message.encode()?)?;
        assert_eq!(
            serde_json::to_string(&decoded.body)?,
            r#"[[],{"a":4,"b":5},{"callbacks":null,"errbacks":null,"chain":[{"task":"add_numbers","args":[1],"kwargs":{},"options":{"queue":"default","task_id":"c"},"subtask_type":null,"immutable":false,"chord_size":null}],"chord":null}]"#
        );
        Ok(())
    }

    /// What Python's `send_task` puts on Redis decodes, unknown headers kept.
    #[test]
    fn decodes_a_python_message() -> Result<(), Box<dyn std::error::Error>> {
        // Captured from Celery 5.7: `send_task("add_numbers", args=[4, 5], queue="default")`.
        let raw = r#"{"body": "W1s0LCA1XSwge30sIHsiY2FsbGJhY2tzIjogbnVsbCwgImVycmJhY2tzIjogbnVsbCwgImNoYWluIjogbnVsbCwgImNob3JkIjogbnVsbH1d", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"lang": "py", "task": "add_numbers", "id": "e23b8ddc-74e4-4939-859b-99517550368e", "shadow": null, "eta": null, "expires": null, "group": null, "group_index": null, "retries": 0, "timelimit": [null, null], "root_id": "e23b8ddc-74e4-4939-859b-99517550368e", "parent_id": null, "argsrepr": "[4, 5]", "kwargsrepr": "{}", "origin": "gen391@vm", "ignore_result": null, "replaced_task_nesting": 0, "stamped_headers": null, "stamps": {}}, "properties": {"correlation_id": "e23b8ddc-74e4-4939-859b-99517550368e", "reply_to": "ef842942-1e62-3e4e-b81c-d8a88a2d2133", "delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "default"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "96fe3c48-f3e6-48d0-8152-be4faa93e1ef"}}"#;
        let decoded = Incoming::decode(raw)?;
        assert_eq!(decoded.body.0, vec![json!(4), json!(5)]);
        assert_eq!(decoded.envelope.headers.task, "add_numbers");
        assert!(!decoded.envelope.headers.ignore_result);
        assert_eq!(
            decoded.envelope.headers.extra.get("replaced_task_nesting"),
            Some(&json!(0))
        );
        assert_eq!(decoded.eta(), None);
        // The minimal message a Celery worker accepts: plain JSON body, few headers.
        let minimal = json!({"body": "[[1], {\"x\": 2}, {}]", "headers": {"task": "t", "id": "i"},
            "properties": {"delivery_tag": "d", "delivery_info": {"exchange": "", "routing_key": "q"}}});
        let decoded = Incoming::decode(&minimal.to_string())?;
        assert_eq!(decoded.body.0, vec![json!(1)]);
        assert_eq!(decoded.body.2, Embed::default());
        Ok(())
    }

    #[test]
    fn priority_buckets_follow_kombu() {
        assert_eq!(list_key("q", 0), "q");
        assert_eq!(list_key("q", 2), "q");
        assert_eq!(list_key("q", 3), "q\x06\x163");
        assert_eq!(list_key("q", 8), "q\x06\x166");
        assert_eq!(list_key("q", 9), "q\x06\x169");
        assert_eq!(
            consume_keys(&["a".into(), "b".into()]),
            [
                "a",
                "b",
                "a\x06\x163",
                "b\x06\x163",
                "a\x06\x166",
                "b\x06\x166",
                "a\x06\x169",
                "b\x06\x169"
            ]
        );
    }

    #[test]
    fn times_round_trip_and_naive_ones_are_utc() {
        let t = Utc.with_ymd_and_hms(2026, 5, 6, 7, 8, 9).single();
        assert_eq!(
            t.map(format_time).as_deref(),
            Some("2026-05-06T07:08:09.000000+00:00")
        );
        assert_eq!(parse_time("2026-05-06T07:08:09.000000+00:00"), t);
        assert_eq!(parse_time("2026-05-06T07:08:09"), t);
        assert_eq!(parse_time("2026-05-06T09:08:09+02:00"), t);
        assert_eq!(parse_time("tomorrow"), None);
    }
}
