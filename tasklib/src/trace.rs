//! Traces that follow a task (cargo feature `otel`): a submit keeps the W3C trace context of
//! the span it runs in, and the worker's `tasklib.task` span continues that trace, so one
//! trace shows the request that submitted a task, then the task itself.
//!
//! What is kept is the W3C `traceparent` header value
//! (`00-{trace id}-{parent span id}-{flags}`, <https://www.w3.org/TR/trace-context/>), in
//! `tasks.trace_context` (on Celery, in the message header `traceparent`). The `tracestate` header is not carried. Without the
//! feature nothing is captured (the column stays NULL) and [`continue_trace`] does nothing:
//! the span is there all the same, as a root.
//!
//! The context is read from the `tracing` span through
//! [`tracing_opentelemetry`](https://docs.rs/tracing-opentelemetry), so the application's
//! subscriber needs its `OpenTelemetryLayer`; without it there is no context to keep.

/// The W3C `traceparent` of the current `tracing` span, when it belongs to an OpenTelemetry
/// trace (feature `otel`); `None` otherwise, and always without the feature.
pub(crate) fn current() -> Option<String> {
    #[cfg(feature = "otel")]
    {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;

        let span = tracing::Span::current();
        if span.is_disabled() {
            return None;
        }
        let context = span.context();
        w3c::format(context.span().span_context())
    }
    #[cfg(not(feature = "otel"))]
    None
}

/// Makes `stored` (a task's `traceparent`, as [`current`] wrote it) the remote parent of
/// `span`, which must not have been entered yet. Does nothing without a valid `traceparent`,
/// when `span` is disabled or the subscriber has no OpenTelemetry layer, and without the
/// feature: `span` is then a root.
pub(crate) fn continue_trace(span: &tracing::Span, stored: Option<&str>) {
    #[cfg(feature = "otel")]
    if let Some(parent) = stored.and_then(w3c::parse) {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;

        let context = opentelemetry::Context::new().with_remote_span_context(parent);
        if let Err(error) = span.set_parent(context) {
            tracing::trace!(%error, "the task's span does not continue its submitter's trace");
        }
    }
    #[cfg(not(feature = "otel"))]
    let _ = (span, stored);
}

/// The `traceparent` header of W3C Trace Context, version `00`: formatted from and parsed
/// into an OpenTelemetry `SpanContext`. Small enough to write here rather than depend on the
/// OpenTelemetry SDK's propagator.
#[cfg(feature = "otel")]
mod w3c {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    /// `00-{trace id}-{span id}-{flags}`, in lowercase hex; `None` for an invalid context.
    pub(super) fn format(context: &SpanContext) -> Option<String> {
        context.is_valid().then(|| {
            format!(
                "00-{}-{}-{:02x}",
                context.trace_id(),
                context.span_id(),
                context.trace_flags().to_u8()
            )
        })
    }

    /// The remote span context of a `traceparent`, or `None` when it is not a valid one.
    /// Versions after `00` are read as `00` (their first four fields mean the same), as the
    /// specification asks; only the sampled flag is kept, as OpenTelemetry's propagator does.
    pub(super) fn parse(header: &str) -> Option<SpanContext> {
        let mut parts = header.trim().split('-');
        let (version, trace_id, span_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let more = parts.next().is_some();
        let hex = |text: &str, len: usize| {
            text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        if !hex(version, 2) || version == "ff" || (version == "00" && more) {
            return None;
        }
        if !hex(trace_id, 32) || !hex(span_id, 16) || !hex(flags, 2) {
            return None;
        }
        let trace_id = TraceId::from_hex(trace_id).ok()?;
        let span_id = SpanId::from_hex(span_id).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        let context = SpanContext::new(
            trace_id,
            span_id,
            TraceFlags::new(flags) & TraceFlags::SAMPLED,
            true,
            TraceState::NONE,
        );
        context.is_valid().then_some(context)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

        #[test]
        fn a_traceparent_round_trips() {
            let context = parse(EXAMPLE).expect("the specification's example parses");
            assert_eq!(
                context.trace_id(),
                TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("hex")
            );
            assert_eq!(
                context.span_id(),
                SpanId::from_hex("00f067aa0ba902b7").expect("hex")
            );
            assert!(context.is_sampled());
            assert!(context.is_remote());
            assert_eq!(format(&context).as_deref(), Some(EXAMPLE));
            let unsampled = EXAMPLE.replace("-01", "-00");
            let context = parse(&unsampled).expect("unsampled parses");
            assert!(!context.is_sampled());
            assert_eq!(format(&context), Some(unsampled));
        }

        #[test]
        fn leading_zeros_are_kept() {
            let context = SpanContext::new(
                TraceId::from(1),
                SpanId::from(2),
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            );
            assert_eq!(
                format(&context).as_deref(),
                Some("00-00000000000000000000000000000001-0000000000000002-01")
            );
            assert_eq!(format(&SpanContext::NONE), None);
        }

        #[test]
        fn invalid_traceparents_are_refused() {
            for bad in [
                "",
                "00",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
                "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            ] {
                assert!(parse(bad).is_none(), "{bad:?} parsed");
            }
            // A later version may add fields; its first four are read as version 00's.
            let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-what-ever";
            let context = parse(later).expect("a later version parses");
            assert!(context.is_sampled());
            assert_eq!(context.trace_flags(), TraceFlags::SAMPLED);
        }
    }
}
