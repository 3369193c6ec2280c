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
    fn non_url_is_hidden() {
        let url = RedactedUrl::new("host=h password=secret");
        assert!(!url.to_string().contains("secret"));
    }
}
