//! The web console: hand-written HTML, CSS and JavaScript (no build step), embedded in the
//! binary and served on the API port under `/console/`, and the per-revision history its
//! charts read.
//!
//! | request | does | token |
//! |---|---|---|
//! | `GET /console/`, `/console/console.js`, `/console/console.css` | the static pages ([`assets`]), with a strict Content-Security-Policy | no: they hold no data |
//! | `GET /apis/nimbus.dev/v1/namespaces/{ns}/revisions/{name}/history` | the last hour of a revision's samples ([`history`]) as JSON | yes |
//!
//! The pages read everything else from the API as kubectl does (lists, `?watch=true` streams,
//! the `log` subresource), sending the token the login page keeps in `sessionStorage`.
//!
//! This crate never reads the store or the router itself: the binary feeds the history through
//! a [`history::Source`] and puts [`history_routes`] behind the API's authentication.

pub mod assets;
pub mod history;

pub use assets::routes;
pub use history::{History, Reading, Sample, Source, routes as history_routes};
