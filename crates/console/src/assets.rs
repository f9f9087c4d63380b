//! The console's static files, embedded at build time and served under `/console/` without the
//! token (they hold no data: every figure is fetched by the page with the token).
//!
//! Every answer carries a strict Content-Security-Policy: scripts, styles and connections from
//! this origin only, no inline script or style, no frames, no plugins, nothing from a CDN.

use axum::Router;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The console's Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/console/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../assets/index.html"),
    },
    Asset {
        path: "/console/dom.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/dom.js"),
    },
    Asset {
        path: "/console/api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/api.js"),
    },
    Asset {
        path: "/console/console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/console.js"),
    },
    Asset {
        path: "/console/console.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/console.css"),
    },
    Asset {
        path: "/console/favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../assets/favicon.svg"),
    },
];

/// The console's routes: its files, and `/console` redirected to `/console/`.
pub fn routes() -> Router {
    let mut router = Router::new().route("/console", get(redirect));
    for asset in ASSETS {
        router = router.route(asset.path, get(move || serve(asset)));
    }
    router
}

async fn serve(asset: &'static Asset) -> Response {
    let mut res = (StatusCode::OK, asset.body).into_response();
    res.headers_mut()
        .insert(CONTENT_TYPE, asset.content_type.parse().expect("valid"));
    secure(res)
}

async fn redirect() -> Response {
    let res = (StatusCode::MOVED_PERMANENTLY, [(LOCATION, "/console/")]).into_response();
    secure(res)
}

/// The security headers every console answer carries.
fn secure(mut res: Response) -> Response {
    let headers: [(HeaderName, &'static str); 5] = [
        (CONTENT_SECURITY_POLICY, CSP),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (X_FRAME_OPTIONS, "DENY"),
        (REFERRER_POLICY, "no-referrer"),
        (CACHE_CONTROL, "no-cache"),
    ];
    for (name, value) in headers {
        res.headers_mut()
            .insert(name, value.parse().expect("valid header value"));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http::Request;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    async fn get(path: &str) -> Response {
        routes()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn every_file_is_served_with_its_type_and_the_csp() {
        for asset in ASSETS {
            let res = get(asset.path).await;
            assert_eq!(res.status(), 200, "{}", asset.path);
            assert_eq!(res.headers()[CONTENT_TYPE], asset.content_type);
            assert_eq!(res.headers()[CONTENT_SECURITY_POLICY], CSP);
            assert_eq!(res.headers()[X_CONTENT_TYPE_OPTIONS], "nosniff");
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, asset.body.as_bytes());
        }
    }

    #[tokio::test]
    async fn the_bare_path_redirects_and_unknown_files_are_not_found() {
        let res = get("/console").await;
        assert_eq!(res.status(), 301);
        assert_eq!(res.headers()[LOCATION], "/console/");
        assert_eq!(get("/console/nope.js").await.status(), 404);
    }

    #[test]
    fn the_pages_use_no_inline_script_style_or_inner_html() {
        let html = include_str!("../assets/index.html");
        assert!(!html.contains("<script>") && !html.contains("style="));
        assert!(!html.contains("http://") && !html.contains("https://"));
        let scripts = ASSETS.iter().filter(|a| a.path.ends_with(".js"));
        for script in scripts {
            for forbidden in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "eval(",
                "new Function",
                "document.write",
            ] {
                assert!(
                    !script.body.contains(forbidden),
                    "{} uses {forbidden}",
                    script.path
                );
            }
        }
    }
}
