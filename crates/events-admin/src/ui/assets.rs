//! Static files served from the binary: htmx (vendored from the npm registry, see
//! `static/README.md`), the console's script and style. No CDN, no build step.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// htmx 2.0.11 (`htmx.org` on npm, `dist/htmx.min.js`), sha256
/// d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717.
const HTMX: &[u8] = include_bytes!("static/htmx.min.js");
const CONSOLE_JS: &[u8] = include_bytes!("static/console.js");
const CONSOLE_CSS: &[u8] = include_bytes!("static/console.css");

/// Bumped with any change to the files, so browsers never mix versions (cached a day).
const VERSION: &str = "1";

/// The URL of a static file.
pub(crate) fn path(file: &str) -> String {
    format!("/ui/static/{file}?v={VERSION}")
}

/// `GET /ui/static/{file}`: the three files, nothing else. Needs no session (they hold no
/// data), so the login page can use them.
pub(crate) async fn file(Path(name): Path<String>) -> Response {
    let (body, mime) = match name.as_str() {
        "htmx.min.js" => (HTMX, "text/javascript; charset=utf-8"),
        "console.js" => (CONSOLE_JS, "text/javascript; charset=utf-8"),
        "console.css" => (CONSOLE_CSS, "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}
