//! Acks-late the way kombu does it on Redis, so that Celery workers and tasklib workers
//! rescue each other's messages: on delivery, `ZADD unacked_index <now> <tag>` and
//! `HSET unacked <tag> [message, exchange, routing_key]`; on ack, `ZREM` and `HDEL`. A
//! message whose entry is older than the visibility timeout goes back to the head of its
//! list (`RPUSH`: the next `BRPOP` takes it), marked `redelivered`.
//!
//! Differences from kombu, both safer: a tasklib worker refreshes the time of the messages it
//! holds (a heartbeat), so a task longer than the visibility timeout is not run twice; and a
//! restore checks and moves one message in one Lua script, so two restorers cannot both
//! re-queue it (kombu takes a lock, `unacked_mutex`, for that).

use std::sync::LazyLock;

use redis::aio::ConnectionLike;
use redis::{RedisResult, Script};
use serde_json::Value;

use crate::engine::celery::protocol::{LOWEST_PRIORITY, list_key};

/// kombu's hash of unacknowledged messages, by delivery tag.
pub(crate) const UNACKED: &str = "unacked";
/// kombu's sorted set of delivery tags, scored by delivery time (Unix seconds).
pub(crate) const UNACKED_INDEX: &str = "unacked_index";
/// How many expired messages one restore pass moves at most.
const RESTORE_BATCH: isize = 100;

/// Moves one message back to its list if it is still unacknowledged and was delivered no
/// later than `ARGV[2]`. KEYS: index, hash, list. ARGV: tag, ceiling, payload.
static RESTORE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('RPUSH', KEYS[3], ARGV[3])
return 1
",
    )
});

/// Takes the next message off the lists `KEYS[3..]` (the first non-empty one, in order) and
/// records it as unacknowledged, in one step. KEYS: index, hash, lists. ARGV: now. Returns
/// `[message, tag]`, or `[message, nil]` for a message without a delivery tag (not recorded:
/// not Celery's), or nil when every list is empty.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
for i = 3, #KEYS do
  local raw = redis.call('RPOP', KEYS[i])
  if raw then
    local ok, msg = pcall(cjson.decode, raw)
    local props = ok and type(msg) == 'table' and msg.properties
    local tag = type(props) == 'table' and props.delivery_tag
    if type(tag) ~= 'string' then
      return {raw, false}
    end
    local info = type(props.delivery_info) == 'table' and props.delivery_info or {}
    local exchange = type(info.exchange) == 'string' and info.exchange or ''
    local routing_key = type(info.routing_key) == 'string' and info.routing_key or ''
    redis.call('ZADD', KEYS[1], ARGV[1], tag)
    redis.call('HSET', KEYS[2], tag,
               '[' .. raw .. ',' .. cjson.encode(exchange) .. ',' .. cjson.encode(routing_key) .. ']')
    return {raw, tag}
  end
end
return false
",
    )
});

/// Takes the next message off `lists` (in priority order) and records it as unacknowledged
/// in the same step, so that no moment exists when a crash loses it (kombu pops, then
/// records). `None` when every list is empty; the tag is `None` for a message that is not
/// Celery's, which was taken but not recorded.
pub(crate) async fn take(
    conn: &mut impl ConnectionLike,
    lists: &[String],
) -> RedisResult<Option<(String, Option<String>)>> {
    let mut invocation = TAKE.key(UNACKED_INDEX);
    invocation.key(UNACKED);
    for list in lists {
        invocation.key(list);
    }
    invocation
        .arg(format!("{:e}", now_score()))
        .invoke_async(conn)
        .await
}

/// Seconds since the Unix epoch, as kombu scores deliveries.
pub(crate) fn now_score() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

/// Records a delivered message as unacknowledged.
pub(crate) async fn deliver(
    conn: &mut impl ConnectionLike,
    tag: &str,
    raw: &str,
    exchange: &str,
    routing_key: &str,
) -> RedisResult<()> {
    // `[message, exchange, routing_key]`, the message as it was (unknown fields kept).
    let entry = format!(
        "[{raw},{},{}]",
        Value::from(exchange),
        Value::from(routing_key)
    );
    redis::pipe()
        .atomic()
        .cmd("ZADD")
        .arg(UNACKED_INDEX)
        .arg(now_score())
        .arg(tag)
        .ignore()
        .cmd("HSET")
        .arg(UNACKED)
        .arg(tag)
        .arg(entry)
        .ignore()
        .exec_async(conn)
        .await
}

/// Acknowledges a message: it is done with.
pub(crate) async fn ack(conn: &mut impl ConnectionLike, tag: &str) -> RedisResult<()> {
    redis::pipe()
        .atomic()
        .cmd("ZREM")
        .arg(UNACKED_INDEX)
        .arg(tag)
        .ignore()
        .cmd("HDEL")
        .arg(UNACKED)
        .arg(tag)
        .ignore()
        .exec_async(conn)
        .await
}

/// Refreshes the delivery time of messages still held (`XX`: an acknowledged one stays
/// gone).
pub(crate) async fn heartbeat(conn: &mut impl ConnectionLike, tags: &[String]) -> RedisResult<()> {
    if tags.is_empty() {
        return Ok(());
    }
    let mut cmd = redis::cmd("ZADD");
    cmd.arg(UNACKED_INDEX).arg("XX");
    let now = now_score();
    for tag in tags {
        cmd.arg(now).arg(tag);
    }
    cmd.exec_async(conn).await
}

/// Re-queues every message delivered before `ceiling` (Unix seconds) and not acknowledged;
/// returns how many.
pub(crate) async fn restore_older_than(
    conn: &mut impl ConnectionLike,
    ceiling: f64,
) -> RedisResult<usize> {
    let tags: Vec<String> = redis::cmd("ZRANGEBYSCORE")
        .arg(UNACKED_INDEX)
        .arg("-inf")
        .arg(ceiling)
        .arg("LIMIT")
        .arg(0)
        .arg(RESTORE_BATCH)
        .query_async(conn)
        .await?;
    let mut restored = 0;
    for tag in tags {
        if restore(conn, &tag, ceiling).await? {
            restored += 1;
        }
    }
    Ok(restored)
}

/// Re-queues one message now, whatever its age (a worker handing back what it holds).
pub(crate) async fn restore_now(conn: &mut impl ConnectionLike, tag: &str) -> RedisResult<bool> {
    restore(conn, tag, f64::MAX).await
}

async fn restore(conn: &mut impl ConnectionLike, tag: &str, ceiling: f64) -> RedisResult<bool> {
    let entry: Option<String> = redis::cmd("HGET")
        .arg(UNACKED)
        .arg(tag)
        .query_async(conn)
        .await?;
    let Some(entry) = entry else {
        // Acknowledged meanwhile, or an index entry without its message: drop the index.
        redis::cmd("ZREM")
            .arg(UNACKED_INDEX)
            .arg(tag)
            .exec_async(conn)
            .await?;
        return Ok(false);
    };
    let Some((payload, queue)) = redelivery(&entry) else {
        tracing::error!(
            tag,
            "an unacked entry is not [message, exchange, routing_key]; left as it is"
        );
        return Ok(false);
    };
    let moved: i64 = RESTORE
        .key(UNACKED_INDEX)
        .key(UNACKED)
        .key(queue)
        .arg(tag)
        .arg(format!("{ceiling:e}"))
        .arg(payload)
        .invoke_async(conn)
        .await?;
    Ok(moved == 1)
}

/// The message marked `redelivered` (as kombu marks it) and the list it goes back to.
fn redelivery(entry: &str) -> Option<(String, String)> {
    let Value::Array(mut parts) = serde_json::from_str::<Value>(entry).ok()? else {
        return None;
    };
    if parts.len() != 3 {
        return None;
    }
    let routing_key = parts[2].as_str()?.to_owned();
    let mut message = parts.swap_remove(0);
    if let Some(headers) = message.get_mut("headers").and_then(Value::as_object_mut) {
        headers.insert("redelivered".into(), Value::Bool(true));
    }
    let priority = message
        .pointer("/properties/priority")
        .and_then(Value::as_u64)
        .map_or(0, |p| p.min(u64::from(LOWEST_PRIORITY)) as u8);
    if let Some(info) = message
        .pointer_mut("/properties/delivery_info")
        .and_then(Value::as_object_mut)
    {
        info.insert("redelivered".into(), Value::Bool(true));
    }
    Some((message.to_string(), list_key(&routing_key, priority)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redelivered_messages_go_back_to_their_bucket() {
        let entry = r#"[{"headers": {"id": "x"}, "properties": {"priority": 6, "delivery_info": {"exchange": "", "routing_key": "q"}}}, "", "q"]"#;
        let (payload, key) = redelivery(entry).unwrap_or_default();
        assert_eq!(key, "q\x06\x166");
        let message: Value = serde_json::from_str(&payload).unwrap_or_default();
        assert_eq!(
            message.pointer("/headers/redelivered"),
            Some(&Value::Bool(true))
        );
        assert_eq!(
            message.pointer("/properties/delivery_info/redelivered"),
            Some(&Value::Bool(true))
        );
        assert!(redelivery("[1, 2]").is_none());
        assert!(redelivery("not json").is_none());
    }
}
