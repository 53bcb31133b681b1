//! The status pages, embedded into the binary from `web/` at build time: the controller's
//! (tasks, subtasks, agents) and each agent's small page of its own subtasks. Static files
//! only; the pages read the same JSON API as the command line, with the same rules (the
//! controller's admin token, the agent's session).

use actix_web::{HttpResponse, web};

const INDEX: &str = include_str!("../../web/index.html");
const APP: &str = include_str!("../../web/app.js");
const STYLE: &str = include_str!("../../web/style.css");
const COMMON: &str = include_str!("../../web/common.js");
const AGENT: &str = include_str!("../../web/agent.html");
const AGENT_APP: &str = include_str!("../../web/agent.js");

/// Scripts and styles from this origin only: nothing is fetched from elsewhere.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'";

fn page(body: &'static str, content_type: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Content-Security-Policy", POLICY))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Cache-Control", "no-cache"))
        .body(body)
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// `/`, `/app.js`, `/common.js`, `/style.css`: the controller's page.
pub fn controller_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(|| async { page(INDEX, HTML) }))
        .route("/app.js", web::get().to(|| async { page(APP, JS) }))
        .route("/common.js", web::get().to(|| async { page(COMMON, JS) }))
        .route("/style.css", web::get().to(|| async { page(STYLE, CSS) }));
}

/// `/`, `/agent.js`, `/common.js`, `/style.css`: an agent's page.
pub fn agent_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(|| async { page(AGENT, HTML) }))
        .route("/agent.js", web::get().to(|| async { page(AGENT_APP, JS) }))
        .route("/common.js", web::get().to(|| async { page(COMMON, JS) }))
        .route("/style.css", web::get().to(|| async { page(STYLE, CSS) }));
}
