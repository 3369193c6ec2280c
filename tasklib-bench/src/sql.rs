//! tasklib's own statements, compiled in from `tasklib/src/engine/postgres/worker/sql.rs`
//! (the file holds constants only, some assembled by `concat!`), so `explain` shows the plans
//! of exactly what the library sends today.
//!
//! They are crate-private in the library; compiling the file here keeps the benchmark honest
//! without widening tasklib's public API. The parameters of each statement are checked
//! against the shape this program knows; a changed statement fails loudly rather than measure
//! something else.

use std::hash::{DefaultHasher, Hash, Hasher};

use crate::db::BenchResult;

const SOURCE: &str = include_str!("../../tasklib/src/engine/postgres/worker/sql.rs");

/// The statements themselves, as the library compiles them.
#[allow(dead_code, unused_macros)]
#[path = "../../tasklib/src/engine/postgres/worker/sql.rs"]
mod statements;

/// A short fingerprint of tasklib's statements as compiled in, printed with the setup so a
/// figure can be matched to the SQL it measured.
pub(crate) fn fingerprint() -> String {
    let mut hasher = DefaultHasher::new();
    SOURCE.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// The text of tasklib's statement `name`, of those `explain` knows.
pub(crate) fn tasklib_statement(name: &str) -> BenchResult<String> {
    match name {
        "CLAIM" => Ok(statements::CLAIM.to_owned()),
        "COMPLETE_MANY" => Ok(statements::COMPLETE_MANY.to_owned()),
        other => Err(format!("tasklib-bench does not know tasklib's `{other}` statement").into()),
    }
}

/// A statement ready for `PREPARE name(types) AS text` and `EXECUTE name(args)`.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub(crate) text: String,
    pub(crate) types: &'static str,
}

/// tasklib's `CLAIM` for a claim of `limit`, and the arguments of an `EXECUTE` claiming
/// no-op tasks of the default queue for worker `bench-explain`.
pub(crate) fn claim(limit: usize) -> BenchResult<(Prepared, String)> {
    let text = tasklib_statement("CLAIM")?;
    // The limit written into the text; $1 queue, $2 names, $3 worker, $4 lock, $5 now,
    // $6 rows started at once (the rest are claimed ahead).
    if !(text.contains("{limit}") && text.contains("$6") && !text.contains("$7")) {
        return Err("tasklib's CLAIM has parameters this program does not know: update tasklib-bench/src/sql.rs".into());
    }
    Ok((
        Prepared {
            text: text.replace("{limit}", &limit.to_string()),
            types: "text, text[], text, float8, timestamptz, int8",
        },
        format!("'default', '{{noop}}', 'bench-explain', 600, NULL, {limit}"),
    ))
}

/// tasklib's `COMPLETE_MANY`, and the arguments of an `EXECUTE` completing attempt 1 of
/// each of `ids` with a null result, for worker `bench-explain`.
pub(crate) fn complete_many(ids: &[String]) -> BenchResult<(Prepared, String)> {
    let text = tasklib_statement("COMPLETE_MANY")?;
    // Typed arrays: $1 ids, $2 attempts, $3 results, $4 worker, $5 now.
    if !(text.contains("unnest($1::uuid[], $2::int4[], $3::jsonb[])") && text.contains("$5")) {
        return Err("tasklib's COMPLETE_MANY has parameters this program does not know: update tasklib-bench/src/sql.rs".into());
    }
    let id_array = format!("{{{}}}", ids.join(","));
    let attempts = format!("{{{}}}", vec!["1"; ids.len()].join(","));
    let results = format!(
        "{{{}}}",
        vec![r#""{\"value\": null}""#; ids.len()].join(",")
    );
    Ok((
        Prepared {
            text,
            types: "uuid[], int4[], jsonb[], text, timestamptz",
        },
        format!("'{id_array}', '{attempts}', '{results}', 'bench-explain', NULL"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_the_shape_of_the_statements_explain_uses() -> BenchResult<()> {
        assert!(claim(10)?.1.contains("'default'"));
        let (statement, args) = complete_many(&["00000000-0000-0000-0000-000000000001".into()])?;
        assert!(statement.text.contains("UPDATE tasks"));
        assert!(args.contains("00000000-0000-0000-0000-000000000001"));
        assert!(tasklib_statement("NO_SUCH").is_err());
        Ok(())
    }
}
