//! SeaORM entities for tasklib's tables, for applications that query them with SeaORM.
//!
//! The column names are a stable contract: monitoring SQL written against them keeps working.

pub mod task;
