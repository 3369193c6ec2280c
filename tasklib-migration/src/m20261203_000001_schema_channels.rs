//! Notification channels named after the schema the `tasks` table lives in, so that two
//! tasklib installations in two schemas of one database do not wake each other.
//!
//! - `tasklib_channel(base)`: the channel for `base` (`tasks_new`, `tasks_done`,
//!   `tasks_cancel`): `base` itself when the table is in `public` (so existing listeners and
//!   the default keep their names), else `<schema>.<base>`. The schema is written into the
//!   function's body when it is created, so the function is immutable and costs nothing.
//!   tasklib's statements call it; they run on connections whose `search_path` starts with
//!   tasklib's schema.
//! - The insert trigger names its channel from the schema of the table it fires on
//!   (`TG_TABLE_SCHEMA`), so an insert through any connection, whatever its `search_path`,
//!   notifies the right channel.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const UP: &[&str] = &[
    r#"
DO $do$
DECLARE
    home text := (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.oid = 'tasks'::regclass);
BEGIN
    EXECUTE format(
        'CREATE FUNCTION %I.tasklib_channel(base text) RETURNS text '
        'LANGUAGE sql IMMUTABLE PARALLEL SAFE AS %L',
        home,
        format('SELECT %L || base', CASE WHEN home = 'public' THEN '' ELSE home || '.' END));
END
$do$
"#,
    r#"
CREATE OR REPLACE FUNCTION tasklib_notify_tasks_new() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(CASE WHEN TG_TABLE_SCHEMA = 'public' THEN 'tasks_new'
                           ELSE TG_TABLE_SCHEMA || '.tasks_new' END,
                      q.queue)
    FROM (SELECT DISTINCT queue FROM new_tasks
          WHERE state = 'pending' AND scheduled_at <= now()) AS q;
    RETURN NULL;
END
$$
"#,
];

const DOWN: &[&str] = &[
    r#"
CREATE OR REPLACE FUNCTION tasklib_notify_tasks_new() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tasks_new', q.queue)
    FROM (SELECT DISTINCT queue FROM new_tasks
          WHERE state = 'pending' AND scheduled_at <= now()) AS q;
    RETURN NULL;
END
$$
"#,
    "DROP FUNCTION IF EXISTS tasklib_channel(text)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(manager, DOWN).await
    }
}
