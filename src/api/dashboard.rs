//! The dashboard at `/`: one HTML page, a stylesheet and a script, built
//! into the binary so that it works offline and cannot drift from the API
//! it reads. Everything it shows comes from the JSON endpoints; it writes
//! nothing but acknowledgements, with the token the user types in.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("../../assets/dashboard/index.html");
const STYLESHEET: &str = include_str!("../../assets/dashboard/dashboard.css");
const SCRIPT: &str = include_str!("../../assets/dashboard/dashboard.js");

/// The page forbids everything it does not use: no inline script, nothing
/// from another origin. A string that slipped past the escaping still
/// could not run.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub(super) async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE,
    )
}

pub(super) async fn stylesheet() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLESHEET)
}

pub(super) async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}
