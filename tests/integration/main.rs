//! Integration tests for tasklib, against a real PostgreSQL: a fresh database per test (on the
//! server at `DATABASE_URL`, or a private throwaway cluster when it is unset).

mod common;

mod admin;
#[cfg(feature = "celery")]
mod celery;
mod chains;
mod config;
mod conformance;
mod docs;
mod fault_bad_data;
mod fault_bad_input;
mod fault_contention;
mod fault_crash;
mod fault_defaults;
mod fault_injection;
mod fault_listener;
mod fault_outage;
mod fault_pool;
mod fault_restart;
mod fault_secrets;
mod fault_support;
mod handler_extras;
mod inspect;
mod limits;
mod logging;
mod migrations;
mod monitoring_queries;
mod notify;
mod operability;
mod overview;
mod pauses;
mod pooler;
mod queues;
mod schedules;
mod schema;
mod submit;
#[cfg(feature = "temporal")]
mod temporal;
mod tls;
#[cfg(feature = "otel")]
mod traces;
mod unique;
mod worker_claiming;
mod worker_execution;
mod worker_recovery;
mod worker_wakeup;
