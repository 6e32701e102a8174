//! The page shell every console page shares, and how values are shown.

use std::time::Duration;

use maud::{DOCTYPE, Markup, html};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::assets;
use super::session::Session;

/// A whole page: head (style, htmx, the console's script; no inline code), the navigation
/// with a logout form when logged in, and `body`.
pub(crate) fn page(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // htmx would otherwise insert a <style> element, which the CSP refuses.
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false}"#;
                title { (title) " · events console" }
                link rel="stylesheet" href=(assets::path("console.css"));
                script src=(assets::path("htmx.min.js")) defer {}
                script src=(assets::path("console.js")) defer {}
            }
            body {
                header {
                    strong { "events console" }
                    @if let Some(s) = session {
                        nav {
                            a href="/ui" { "Overview" }
                            a href="/ui/dlq" { "Dead letters" }
                            a href="/ui/tail" { "Live tail" }
                        }
                        form.logout method="post" action="/ui/logout" {
                            (csrf_field(s))
                            span.who { (s.token_id) }
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The hidden CSRF field every form of a session carries.
pub(crate) fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name="_csrf" value=(session.csrf); }
}

/// RFC 3339 in UTC, to the second.
pub(crate) fn time(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// An optional time, `-` when missing.
pub(crate) fn opt_time(t: Option<OffsetDateTime>) -> String {
    t.map_or_else(|| "-".to_owned(), time)
}

/// A short age: `0s`, `42s`, `3m 5s`, `2h 1m`, `4d 2h`.
pub(crate) fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Bytes in binary units.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_sizes_read_well() {
        assert_eq!(age(Duration::from_secs(0)), "0s");
        assert_eq!(age(Duration::from_secs(185)), "3m 5s");
        assert_eq!(age(Duration::from_secs(7260)), "2h 1m");
        assert_eq!(age(Duration::from_secs(86_400 * 4 + 7200)), "4d 2h");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
