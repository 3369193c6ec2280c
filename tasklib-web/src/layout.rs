//! The page shell (navigation, style, script), error pages, and formatting helpers.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use tasklib::TaskState;

use crate::state::{Base, Inner};

const STYLE: &str = r#"
:root { --fg:#1d2430; --muted:#667085; --line:#e4e7ec; --bg:#f8f9fb; --card:#fff;
  --accent:#2f5bd3; --ok:#14804a; --warn:#b54708; --bad:#b42318; --idle:#475467; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
  color:var(--fg); background:var(--bg); }
header { display:flex; align-items:center; gap:24px; padding:10px 24px; background:#101828; color:#fff; }
header .brand { font-weight:600; letter-spacing:.02em; }
header nav a { color:#cfd4dc; text-decoration:none; margin-right:16px; padding:4px 0; }
header nav a.on { color:#fff; border-bottom:2px solid #fff; }
header .right { margin-left:auto; font-size:12px; color:#cfd4dc; }
main { padding:20px 24px; max-width:1400px; }
h1 { font-size:20px; margin:0 0 14px; }
h2 { font-size:15px; margin:22px 0 8px; }
table { border-collapse:collapse; width:100%; background:var(--card); border:1px solid var(--line); }
th, td { text-align:left; padding:6px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { font-size:12px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); background:#f2f4f7; }
td.n, th.n { text-align:right; font-variant-numeric:tabular-nums; }
tr:hover td { background:#f9fafb; }
a { color:var(--accent); }
code, pre, .mono { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; font-size:12.5px; }
td pre { white-space:pre-wrap; word-break:break-word; max-height:220px; }
pre { background:#f2f4f7; border:1px solid var(--line); padding:10px; overflow:auto; max-height:360px; margin:0; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600; color:#fff; }
.b-pending { background:var(--idle); } .b-running { background:var(--accent); }
.b-completed { background:var(--ok); } .b-failed { background:var(--bad); }
.b-retrying { background:var(--warn); } .b-cancelled { background:#98a2b3; }
.b-paused { background:var(--warn); }
.muted { color:var(--muted); }
.filters { display:flex; gap:10px; flex-wrap:wrap; align-items:end; margin-bottom:12px; }
.filters label { display:flex; flex-direction:column; font-size:12px; color:var(--muted); }
input, select, button { font:inherit; padding:4px 8px; border:1px solid #d0d5dd; border-radius:6px; background:#fff; }
button { cursor:pointer; }
button.act { background:var(--accent); color:#fff; border-color:var(--accent); }
button.danger { background:var(--bad); color:#fff; border-color:var(--bad); }
form.inline { display:inline; }
.grid { display:grid; grid-template-columns:180px 1fr; gap:4px 16px; background:var(--card);
  border:1px solid var(--line); padding:12px; }
.grid div:nth-child(odd) { color:var(--muted); }
.notice { padding:8px 12px; border-radius:6px; background:#ecfdf3; border:1px solid #abefc6; margin-bottom:12px; }
.error { padding:8px 12px; border-radius:6px; background:#fef3f2; border:1px solid #fecdca; margin-bottom:12px; }
.pager { margin-top:10px; display:flex; gap:16px; }
.err { color:var(--bad); max-width:420px; overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
svg.spark rect.c { fill:var(--ok); } svg.spark rect.f { fill:var(--bad); }
footer { padding:12px 24px; color:var(--muted); font-size:12px; }
"#;

/// Refreshes the page every 5 s while the box is ticked (remembered per browser), and asks
/// before a form marked `data-confirm` is sent.
const SCRIPT: &str = r#"
(function () {
  var box = document.getElementById('auto');
  if (box) {
    box.checked = localStorage.getItem('tasklib-auto') === '1';
    var timer = null;
    var arm = function () {
      if (timer) { clearTimeout(timer); timer = null; }
      if (box.checked) { timer = setTimeout(function () { location.reload(); }, 5000); }
    };
    box.addEventListener('change', function () {
      localStorage.setItem('tasklib-auto', box.checked ? '1' : '0'); arm();
    });
    arm();
  }
  document.querySelectorAll('form[data-confirm]').forEach(function (form) {
    form.addEventListener('submit', function (e) {
      if (!confirm(form.getAttribute('data-confirm'))) { e.preventDefault(); }
    });
  });
})();
"#;

/// Which navigation entry is lit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Queues,
    Tasks,
    Workers,
}

/// A whole page around `body`.
pub(crate) fn page(base: &Base, state: &Inner, nav: Nav, title: &str, body: Markup) -> Markup {
    let link = |to: Nav, path: &str, label: &str| {
        html! { a class=[(nav == to).then_some("on")] href=(base.to(path)) { (label) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · tasklib" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    span.brand { "tasklib" }
                    nav {
                        (link(Nav::Queues, "/", "Queues"))
                        (link(Nav::Tasks, "/tasks", "Tasks"))
                        (link(Nav::Workers, "/workers", "Workers"))
                    }
                    label.right { input #auto type="checkbox"; " auto-refresh" }
                }
                main { (body) }
                footer {
                    "Times are UTC. "
                    @if let Some(reason) = state.actions_off_reason() { (reason) }
                }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    }
}

/// A page that went wrong: its status and one line saying why.
#[derive(Debug)]
pub(crate) struct PageError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl PageError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        PageError {
            status,
            message: message.into(),
        }
    }
}

impl From<tasklib::Error> for PageError {
    fn from(error: tasklib::Error) -> Self {
        let status = match &error {
            tasklib::Error::NotFound { .. } => StatusCode::NOT_FOUND,
            tasklib::Error::InvalidState { .. } | tasklib::Error::UniqueKeyTaken { .. } => {
                StatusCode::CONFLICT
            }
            tasklib::Error::InvalidOption { .. } => StatusCode::BAD_REQUEST,
            tasklib::Error::Unsupported { .. } => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::warn!(error = %error, "dashboard request failed");
        }
        PageError::new(status, error.to_string())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let body = html! {
            (DOCTYPE)
            html lang="en" {
                head { meta charset="utf-8"; title { "Error · tasklib" } style { (PreEscaped(STYLE)) } }
                body { main {
                    h1 { (self.status.as_u16()) " " (self.status.canonical_reason().unwrap_or("")) }
                    p.error { (self.message) }
                    p { a href="javascript:history.back()" { "Back" } }
                } }
            }
        };
        (self.status, body).into_response()
    }
}

/// A state as a coloured badge; a failed task waiting for a retry shows as `retrying`.
pub(crate) fn state_badge(state: TaskState, retrying: bool) -> Markup {
    let label = if state == TaskState::Failed && retrying {
        "retrying".to_owned()
    } else {
        state.to_string()
    };
    html! { span class={ "badge b-" (label) } { (label) } }
}

/// `2026-12-03 10:41:07`.
pub(crate) fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `time`, or a dash.
pub(crate) fn time_opt(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(|| "—".to_owned(), time)
}

/// A short human duration: `850 ms`, `12.3 s`, `4 m 05 s`, `3 h 12 m`, `2 d 4 h`.
pub(crate) fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    if ms < 1_000 {
        format!("{ms} ms")
    } else if s < 60 {
        format!("{:.1} s", d.as_secs_f64())
    } else if s < 3_600 {
        format!("{} m {:02} s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{} h {:02} m", s / 3_600, (s % 3_600) / 60)
    } else {
        format!("{} d {} h", s / 86_400, (s % 86_400) / 3_600)
    }
}

/// The time from `from` to `to`, when both are known and in order.
pub(crate) fn between(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Option<Duration> {
    (to? - from?).to_std().ok()
}

/// A hidden field with the action token, for every action form.
pub(crate) fn csrf_field(state: &Inner) -> Markup {
    html! { input type="hidden" name="csrf" value=(state.csrf); }
}

/// A one-line notice from a `?done=` parameter after an action.
pub(crate) fn notice(done: Option<&str>) -> Markup {
    let text = match done {
        Some("retry") => "Re-queued.",
        Some("cancel") => "Cancel requested.",
        Some("delete") => "Deleted.",
        Some("pause") => "Queue paused.",
        Some("resume") => "Queue resumed.",
        _ => return html! {},
    };
    html! { p.notice { (text) } }
}
