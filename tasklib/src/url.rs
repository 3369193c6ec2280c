//! Database URLs that never show their password.

use std::fmt;

/// A database URL whose [`Display`](fmt::Display) and [`Debug`] forms replace the password
/// with `***`, so it can be logged and put in errors.
///
/// ```
/// use tasklib::RedactedUrl;
/// let url = RedactedUrl::new("postgres://app:s3cret@db.internal:5432/app");
/// assert_eq!(url.to_string(), "postgres://app:***@db.internal:5432/app");
/// assert!(!format!("{url:?}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RedactedUrl {
    raw: String,
    shown: String,
}

impl RedactedUrl {
    /// Wraps a URL.
    pub fn new(raw: impl Into<String>) -> Self {
        let raw = raw.into();
        let shown = redact(&raw);
        Self { raw, shown }
    }

    /// The URL with its password, to hand to a driver. Never log this.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// The value of the last query parameter named any of `names` (percent-decoded), if the
    /// URL is a URL and has one.
    pub(crate) fn query_param(&self, names: &[&str]) -> Option<String> {
        let parsed = url::Url::parse(&self.raw).ok()?;
        parsed
            .query_pairs()
            .filter(|(key, _)| names.contains(&key.as_ref()))
            .last()
            .map(|(_, value)| value.into_owned())
    }

    /// The URL without the query parameters named in `remove`, followed by `add` (the values
    /// percent-encoded). The other parameters stay exactly as written: drivers decode query
    /// values differently (tokio-postgres does not read `+` as a space), so they are not
    /// re-encoded. `None` when the text is not a URL.
    pub(crate) fn with_query_params(
        &self,
        remove: &[&str],
        add: &[(&str, &str)],
    ) -> Option<RedactedUrl> {
        let mut parsed = url::Url::parse(&self.raw).ok()?;
        let mut pairs: Vec<String> = parsed
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|pair| !pair.is_empty())
            .filter(|pair| {
                let key = pair.split('=').next().unwrap_or_default();
                let key = url::form_urlencoded::parse(key.as_bytes())
                    .next()
                    .map(|(k, _)| k.into_owned())
                    .unwrap_or_default();
                !remove.contains(&key.as_str())
            })
            .map(str::to_owned)
            .collect();
        pairs.extend(
            add.iter()
                .map(|(key, value)| format!("{}={}", percent_encode(key), percent_encode(value))),
        );
        if pairs.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.set_query(Some(&pairs.join("&")));
        }
        Some(RedactedUrl::new(String::from(parsed)))
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters and `/`, which both
/// drivers decode alike.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Replaces the password of a URL with `***`. Strings that are not URLs are hidden whole
/// (they may be key=value connection strings holding a password).
fn redact(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) => {
            if parsed.password().is_some() && parsed.set_password(Some("***")).is_err() {
                return "<unprintable database URL>".to_owned();
            }
            let has_password_param = parsed
                .query_pairs()
                .any(|(key, _)| key.eq_ignore_ascii_case("password"));
            if has_password_param {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k.eq_ignore_ascii_case("password") {
                            "***".into()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        Err(_) => "<database URL that is not a URL>".to_owned(),
    }
}

impl fmt::Display for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedactedUrl({:?})", self.shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_password_in_authority_and_query() {
        let url = RedactedUrl::new("postgres://u:pw%40x@h/db?password=other&sslmode=require");
        let shown = url.to_string();
        assert!(!shown.contains("pw"), "{shown}");
        assert!(!shown.contains("other"), "{shown}");
        assert!(shown.contains("sslmode=require"), "{shown}");
        assert_eq!(
            url.expose(),
            "postgres://u:pw%40x@h/db?password=other&sslmode=require"
        );
    }

    #[test]
    fn url_without_password_is_unchanged() {
        let url = RedactedUrl::new("postgres://postgres@127.0.0.1:5432/test");
        assert_eq!(url.to_string(), "postgres://postgres@127.0.0.1:5432/test");
    }

    #[test]
    fn reads_and_replaces_query_parameters() {
        let url = RedactedUrl::new(
            "postgres://u:pw@h:5432/db?options=-c%20a%3Db&sslmode=require&application_name=x+y",
        );
        assert_eq!(
            url.query_param(&["sslmode", "ssl-mode"]).as_deref(),
            Some("require")
        );
        assert_eq!(url.query_param(&["sslrootcert"]), None);
        let changed = url
            .with_query_params(
                &["sslmode", "sslrootcert"],
                &[("sslmode", "verify-ca"), ("sslrootcert", "/etc/my ca.pem")],
            )
            .map(|u| u.expose().to_owned());
        assert_eq!(
            changed.as_deref(),
            Some(
                "postgres://u:pw@h:5432/db?options=-c%20a%3Db&application_name=x+y\
                 &sslmode=verify-ca&sslrootcert=/etc/my%20ca.pem"
            )
        );
        let socket = RedactedUrl::new("postgres://postgres@%2Ftmp%2Fpg:5432/db?sslmode=prefer");
        assert_eq!(
            socket
                .with_query_params(&["sslmode"], &[])
                .map(|u| u.expose().to_owned())
                .as_deref(),
            Some("postgres://postgres@%2Ftmp%2Fpg:5432/db")
        );
        assert!(
            RedactedUrl::new("host=h")
                .with_query_params(&[], &[])
                .is_none()
        );
    }

    #[test]
    fn non_url_is_hidden() {
        let url = RedactedUrl::new("host=h password=secret");
        assert!(!url.to_string().contains("secret"));
    }
}
