//! `/dashboard`: one static page (HTML, CSS, JS embedded in the binary, no asset from the
//! internet) that polls `/v1/pingback/summary` every 2 s and draws its charts as SVG.

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::Pingback;

const HTML: &str = include_str!("../assets/dashboard.html");
const JS: &str = include_str!("../assets/dashboard.js");
const CSS: &str = include_str!("../assets/dashboard.css");
/// Only this origin: the page works offline and cannot be made to load anything else.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

pub fn routes() -> Router<Arc<Pingback>> {
    Router::new()
        .route("/dashboard", get(|| async { asset(HTML, "text/html; charset=utf-8") }))
        .route("/dashboard/", get(|| async { asset(HTML, "text/html; charset=utf-8") }))
        .route("/dashboard/dashboard.js", get(|| async { asset(JS, "text/javascript; charset=utf-8") }))
        .route("/dashboard/dashboard.css", get(|| async { asset(CSS, "text/css; charset=utf-8") }))
}
