//! The names of the notification channels of one schema: the base names
//! ([`NEW_TASKS_CHANNEL`](super::worker::NEW_TASKS_CHANNEL), [`CANCEL_CHANNEL`](super::worker::CANCEL_CHANNEL),
//! [`DONE_CHANNEL`](super::wait::DONE_CHANNEL)) for `public`, `<schema>.<base>` for any other
//! schema: the rule of the database's `tasklib_channel` function, which the statements that
//! notify call.

use super::wait::DONE_CHANNEL;
use super::worker::{CANCEL_CHANNEL, NEW_TASKS_CHANNEL, QUEUES_CHANNEL};

/// One schema's channels, each quoted for `LISTEN` by [`Channels::listen`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Channels {
    pub(crate) new: String,
    pub(crate) cancel: String,
    pub(crate) done: String,
    pub(crate) queues: String,
}

impl Channels {
    /// The channels of tasklib's tables in `schema` (a checked identifier).
    pub(crate) fn of(schema: &str) -> Channels {
        let name = |base: &str| match schema {
            crate::config::DEFAULT_SCHEMA => base.to_owned(),
            _ => format!("{schema}.{base}"),
        };
        Channels {
            new: name(NEW_TASKS_CHANNEL),
            cancel: name(CANCEL_CHANNEL),
            done: name(DONE_CHANNEL),
            queues: name(QUEUES_CHANNEL),
        }
    }

    /// `LISTEN` on `channels`, as one statement batch.
    pub(crate) fn listen(channels: &[&str]) -> String {
        channels
            .iter()
            .map(|c| format!("LISTEN \"{c}\";"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keeps_the_base_names_and_other_schemas_prefix_them() {
        assert_eq!(Channels::of("public").new, "tasks_new");
        let jobs = Channels::of("jobs");
        assert_eq!(
            (jobs.new.as_str(), jobs.cancel.as_str(), jobs.done.as_str()),
            ("jobs.tasks_new", "jobs.tasks_cancel", "jobs.tasks_done")
        );
        assert_eq!(
            Channels::listen(&[&jobs.new, &jobs.cancel]),
            r#"LISTEN "jobs.tasks_new"; LISTEN "jobs.tasks_cancel";"#
        );
    }
}
