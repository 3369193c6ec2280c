//! Bulk submits through binary `COPY`: the rows of a large `submit_many` go to the server as
//! one stream of binary tuples, which the server writes with its bulk insert path, instead of
//! as typed arrays that one `INSERT … SELECT FROM unnest(…)` takes apart row by row.
//!
//! Only for rows due now, without unique keys, on a direct connection; everything else takes
//! [`insert`](super::insert::insert). The table's defaults fill what the stream leaves out
//! (`scheduled_at` and `created_at` are the transaction's `now()`, the database's clock, as
//! with the insert), and the statement-level trigger fires once for the statement, as it does
//! for an insert: one `NOTIFY` per queue. One `COPY` is one statement in its own transaction,
//! so a bulk submit stays all-or-nothing. (`docs/performance.md` has the measurements.)

use sea_orm::sqlx::PgPool;
use sea_orm::sqlx::postgres::PgPoolCopyExt;
use sea_orm::{DbErr, RuntimeErr};
use serde_json::Value;

use crate::Result;
use crate::submit::NewTask;
use crate::unique::Submitted;

/// The fewest rows worth a `COPY`: below this, the single insert statement is as fast.
pub(crate) const COPY_FROM: usize = 64;

/// The columns the stream carries, in its order; the `COPY` statement for `schema`.
pub(crate) fn statement(schema: &str) -> String {
    format!(
        "COPY \"{schema}\".tasks (id, name, queue, args, priority, max_retries, \
         timeout_seconds, tags, trace_context) FROM STDIN (FORMAT binary)"
    )
}

/// Whether `rows` can go through `COPY`: enough of them, all due now, none unique.
pub(crate) fn suits(rows: &[NewTask]) -> bool {
    rows.len() >= COPY_FROM
        && rows.iter().all(|row| {
            row.unique.is_none() && row.scheduled_at.is_none() && row.delay_seconds == 0.0
        })
}

/// Writes `rows` with `statement` (from [`statement`]) on a connection of `pool`.
pub(crate) async fn copy_in(
    pool: &PgPool,
    statement: &str,
    rows: Vec<NewTask>,
) -> Result<Vec<Submitted>> {
    let ids: Vec<Submitted> = rows.iter().map(|row| Submitted::new(row.id)).collect();
    let data = encode(&rows);
    let mut copy = pool.copy_in_raw(statement).await.map_err(error)?;
    copy.send(data).await.map_err(error)?;
    let written = copy.finish().await.map_err(error)?;
    debug_assert_eq!(written, ids.len() as u64);
    Ok(ids)
}

fn error(error: sea_orm::sqlx::Error) -> crate::Error {
    crate::Error::Database(DbErr::Exec(RuntimeErr::SqlxError(std::sync::Arc::new(
        error,
    ))))
}

/// The rows in `COPY`'s binary format: a signature and two empty header fields, then per row
/// its field count and each field as a length (-1 for NULL) and the value in the type's
/// binary form, then -1.
fn encode(rows: &[NewTask]) -> Vec<u8> {
    const FIELDS: i16 = 9;
    let mut out = Vec::with_capacity(19 + rows.len() * 160);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes()); // flags
    out.extend_from_slice(&0i32.to_be_bytes()); // header extension length
    for row in rows {
        out.extend_from_slice(&FIELDS.to_be_bytes());
        field(&mut out, row.id.as_bytes());
        field(&mut out, row.name.as_bytes());
        field(&mut out, row.queue.as_bytes());
        jsonb(&mut out, &row.args);
        field(&mut out, &row.priority.to_be_bytes());
        field(&mut out, &row.max_retries.to_be_bytes());
        match row.timeout_seconds {
            Some(seconds) => field(&mut out, &seconds.to_be_bytes()),
            None => null(&mut out),
        }
        jsonb(&mut out, &row.tags);
        match &row.trace_context {
            Some(trace) => field(&mut out, trace.as_bytes()),
            None => null(&mut out),
        }
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

fn field(out: &mut Vec<u8>, value: &[u8]) {
    // A field longer than 2 GiB is refused by the server (its limit is 1 GiB) before this
    // length could mislead it.
    let len = i32::try_from(value.len()).unwrap_or(i32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
}

fn null(out: &mut Vec<u8>) {
    out.extend_from_slice(&(-1i32).to_be_bytes());
}

/// `jsonb` in binary: a version byte (1), then the JSON text.
fn jsonb(out: &mut Vec<u8>, value: &Value) {
    let at = out.len();
    out.extend_from_slice(&0i32.to_be_bytes());
    out.push(1);
    // Writing a `Value` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
    let len = i32::try_from(out.len() - at - 4).unwrap_or(i32::MAX);
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: u64) -> NewTask {
        NewTask {
            id: uuid::Uuid::now_v7(),
            name: "t".into(),
            queue: "q".into(),
            args: serde_json::json!({ "n": n }),
            priority: 0,
            max_retries: 3,
            timeout_seconds: None,
            scheduled_at: None,
            delay_seconds: 0.0,
            tags: serde_json::json!({}),
            unique: None,
            trace_context: None,
        }
    }

    #[test]
    fn only_many_rows_due_now_without_keys_go_through_copy() {
        let rows: Vec<NewTask> = (0..COPY_FROM as u64).map(row).collect();
        assert!(suits(&rows));
        assert!(!suits(&rows[1..]));
        let mut delayed: Vec<NewTask> = (0..COPY_FROM as u64).map(row).collect();
        delayed[3].delay_seconds = 1.0;
        assert!(!suits(&delayed));
        let mut scheduled: Vec<NewTask> = (0..COPY_FROM as u64).map(row).collect();
        scheduled[0].scheduled_at = Some(chrono::Utc::now());
        assert!(!suits(&scheduled));
    }

    #[test]
    fn encodes_the_binary_format() {
        let one = row(7);
        let data = encode(std::slice::from_ref(&one));
        assert!(data.starts_with(b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0"));
        assert!(data.ends_with(&[0xff, 0xff]));
        // Field count, then the id: length 16 and its bytes.
        assert_eq!(&data[19..21], &9i16.to_be_bytes());
        assert_eq!(&data[21..25], &16i32.to_be_bytes());
        assert_eq!(&data[25..41], one.id.as_bytes());
        // The arguments as jsonb: version 1, then the text.
        let args = br#"{"n":7}"#;
        let mut expected = ((args.len() + 1) as i32).to_be_bytes().to_vec();
        expected.push(1);
        expected.extend_from_slice(args);
        assert!(
            data.windows(expected.len())
                .any(|w| w == expected.as_slice())
        );
    }
}
