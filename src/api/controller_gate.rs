//! The controller's front door: what every request must show before any handler runs or
//! any body is read. It is a plain function of the request's method, path and headers
//! ([`Gate::check`]), wrapped around the whole app by `controller::serve`, so that a
//! refused request is answered without its body ever being read (a 60 MB upload without
//! the token costs the controller nothing).
//!
//! In order:
//! 1. `Host` names this controller: an IP address, `localhost`, this machine's name or a
//!    name given with `--name`. A web page that rebinds its own DNS name to 127.0.0.1 sends
//!    its name and is refused (DNS rebinding).
//! 2. A request from a browser page of another origin is refused: an `Origin` other than
//!    the controller's own, or, for a state-changing method, `Sec-Fetch-Site: cross-site`.
//! 3. Every call but `GET /v1/health` and the status page's static files carries
//!    `Authorization: Bearer <admin token>`, loopback included; `POST /v1/agents/join`
//!    carries the join token instead (or the admin token).
//! 4. A state-changing call with a body sends it as `application/json`: a page's
//!    `text/plain` form post is not a call.
//!
//! It must never read the body, and never let a request through on a header it could not
//! parse.

use actix_web::http::Method;
use actix_web::http::header::HeaderMap;

use super::ApiError;
use crate::config::constant_time_eq;

/// Paths anyone who can reach the controller may GET: its health and the status page's
/// files (the page then asks for the token before it reads anything).
const OPEN_PATHS: [&str; 5] = ["/v1/health", "/", "/app.js", "/common.js", "/style.css"];

/// Where `dbhaul agent serve --controller URL --join-token T` registers itself.
pub const JOIN_PATH: &str = "/v1/agents/join";

/// What the controller accepts; built once at start.
#[derive(Debug, Clone)]
pub struct Gate {
    pub admin_token: String,
    pub join_token: String,
    /// Host names (lower case) besides IP addresses and `localhost` that name this controller.
    pub names: Vec<String>,
    /// `https` or `http`: the scheme of the controller's own origin.
    pub scheme: &'static str,
}

impl Gate {
    /// `Ok` when the request may go on to its handler; else the refusal to answer with.
    pub fn check(&self, method: &Method, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
        let host = header(headers, "host").ok_or_else(|| {
            ApiError::bad_request("send a Host header naming the controller's address")
        })?;
        if !self.names_this_controller(host) {
            return Err(ApiError::new(
                421,
                format!(
                    "this controller does not answer to the name `{host}`: use its address \
                     (https://127.0.0.1:8554 on its machine), or start it with --name {} to \
                     accept that name",
                    host_part(host)
                ),
            ));
        }
        let changes_state = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if let Some(origin) = header(headers, "origin")
            && !self.is_own_origin(origin, host)
        {
            return Err(ApiError::new(
                403,
                format!(
                    "refused a request from the web page at {origin}: the controller's API \
                     answers its own status page only"
                ),
            ));
        }
        if changes_state && header(headers, "sec-fetch-site") == Some("cross-site") {
            return Err(ApiError::new(
                403,
                "refused a request sent by a page of another site: the controller's API \
                 answers its own status page only",
            ));
        }
        self.authorize(method, path, headers)?;
        if changes_state {
            check_content_type(headers)?;
        }
        Ok(())
    }

    fn authorize(&self, method: &Method, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
        let open = matches!(*method, Method::GET | Method::HEAD) && OPEN_PATHS.contains(&path);
        if open {
            return Ok(());
        }
        let given = bearer(headers).unwrap_or("");
        if !given.is_empty() && constant_time_eq(given.as_bytes(), self.admin_token.as_bytes()) {
            return Ok(());
        }
        if path == JOIN_PATH && *method == Method::POST {
            if !given.is_empty() && constant_time_eq(given.as_bytes(), self.join_token.as_bytes()) {
                return Ok(());
            }
            return Err(ApiError::unauthorized(
                "wrong join token: give the content of join.token in the controller's folder \
                 with --join-token or DBHAUL_JOIN_TOKEN",
            ));
        }
        Err(ApiError::unauthorized(if given.is_empty() {
            "the controller needs its admin token for every call: run the command as the \
             controller's owner or root on its machine (the token is read from admin.token in \
             the controller's folder; --controller-dir names another folder), or send the \
             content of that file with --token or DBHAUL_TOKEN"
        } else {
            "wrong admin token: send the content of admin.token in the controller's folder \
             with --token or DBHAUL_TOKEN (as the controller's owner or root on its machine, \
             leave both out and it is read by itself)"
        }))
    }

    fn names_this_controller(&self, host: &str) -> bool {
        let name = host_part(host);
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<std::net::IpAddr>().is_ok() {
            // An address is not a name an attacker's DNS can rebind.
            return true;
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        name == "localhost" || self.names.contains(&name)
    }

    /// The page's origin is `scheme://Host` of this very request.
    fn is_own_origin(&self, origin: &str, host: &str) -> bool {
        let own = format!("{}://{}", self.scheme, host);
        origin.eq_ignore_ascii_case(&own)
            || (self.scheme == "https" && origin.eq_ignore_ascii_case(&own.replace(":443", "")))
    }
}

/// A header's value as text; `None` when absent or not text.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = header(headers, "authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// `name` of `name:port`, `[::1]` of `[::1]:port`.
fn host_part(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// A state-changing call's body, if any, is JSON; a body-less call sends no other type.
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let refused = || {
        ApiError::new(
            415,
            "send the request body as JSON with Content-Type: application/json",
        )
    };
    match header(headers, "content-type") {
        Some(kind) => {
            let mime = kind.split(';').next().unwrap_or("").trim();
            if mime.eq_ignore_ascii_case("application/json") {
                Ok(())
            } else {
                Err(refused())
            }
        }
        None => {
            let length = header(headers, "content-length").map(|l| l.parse::<u64>());
            match (length, headers.contains_key("transfer-encoding")) {
                (None, false) | (Some(Ok(0)), false) => Ok(()),
                _ => Err(refused()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn gate() -> Gate {
        Gate {
            admin_token: "admin".into(),
            join_token: "join".into(),
            names: vec!["ctl.example.com".into()],
            scheme: "https",
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    /// A request (method, path, headers) and the status the gate answers (None: let through).
    type Case<'a> = (Method, &'a str, &'a [(&'a str, &'a str)], Option<u16>);

    #[test]
    fn requests_are_refused_for_what_they_lack() {
        let auth = "Bearer admin";
        #[rustfmt::skip]
        let cases: &[Case] = &[
            (Method::GET, "/v1/health", &[("host", "127.0.0.1:8554")], None),
            (Method::GET, "/", &[("host", "localhost:8554")], None),
            (Method::GET, "/app.js", &[("host", "[::1]:8554")], None),
            (Method::GET, "/v1/tasks", &[("host", "127.0.0.1:8554")], Some(401)),
            (Method::GET, "/metrics", &[("host", "127.0.0.1:8554")], Some(401)),
            (Method::GET, "/v1/tasks", &[("host", "127.0.0.1:8554"), ("authorization", "Bearer nope")], Some(401)),
            (Method::GET, "/v1/tasks", &[("host", "127.0.0.1:8554"), ("authorization", auth)], None),
            (Method::GET, "/v1/tasks", &[("host", "ctl.example.com:8554"), ("authorization", auth)], None),
            (Method::GET, "/v1/tasks", &[("host", "CTL.example.com."), ("authorization", auth)], None),
            (Method::GET, "/", &[("host", "rebind.attacker.test:8554")], Some(421)),
            (Method::GET, "/v1/tasks", &[("host", "rebind.attacker.test:8554"), ("authorization", auth)], Some(421)),
            (Method::GET, "/v1/tasks", &[("authorization", auth)], Some(400)),
            (Method::POST, "/v1/tasks/t/start", &[("host", "127.0.0.1:8554"), ("content-type", "text/plain")], Some(401)),
            (Method::POST, "/v1/tasks/t/start", &[("host", "127.0.0.1:8554"), ("authorization", auth), ("content-type", "text/plain")], Some(415)),
            (Method::POST, "/v1/tasks/t/start", &[("host", "127.0.0.1:8554"), ("authorization", auth), ("content-length", "4")], Some(415)),
            (Method::POST, "/v1/tasks/t/start", &[("host", "127.0.0.1:8554"), ("authorization", auth)], None),
            (Method::POST, "/v1/tasks", &[("host", "127.0.0.1:8554"), ("authorization", auth), ("content-type", "application/json; charset=utf-8")], None),
            (Method::POST, "/v1/tasks/t/start", &[("host", "127.0.0.1:8554"), ("authorization", auth), ("origin", "https://evil.test")], Some(403)),
            (Method::POST, "/v1/tasks/t/start", &[("host", "127.0.0.1:8554"), ("authorization", auth), ("origin", "null")], Some(403)),
            (Method::POST, "/v1/tasks/t/start", &[("host", "127.0.0.1:8554"), ("authorization", auth), ("origin", "http://127.0.0.1:8554")], Some(403)),
            (Method::POST, "/v1/tasks/t/start", &[("host", "127.0.0.1:8554"), ("authorization", auth), ("origin", "https://127.0.0.1:8554")], None),
            (Method::POST, "/v1/tasks/t/start", &[("host", "127.0.0.1:8554"), ("authorization", auth), ("sec-fetch-site", "cross-site")], Some(403)),
            (Method::GET, "/", &[("host", "127.0.0.1:8554"), ("sec-fetch-site", "cross-site")], None),
            (Method::POST, JOIN_PATH, &[("host", "10.0.0.2:8554"), ("authorization", "Bearer join"), ("content-type", "application/json")], None),
            (Method::POST, JOIN_PATH, &[("host", "10.0.0.2:8554"), ("authorization", "Bearer nope")], Some(401)),
            (Method::DELETE, "/v1/agents/join", &[("host", "10.0.0.2:8554"), ("authorization", "Bearer join")], Some(401)),
        ];
        for (method, path, pairs, want) in cases {
            let got = gate()
                .check(method, path, &headers(pairs))
                .err()
                .map(|e| e.status);
            assert_eq!(got, *want, "{method} {path} {pairs:?}");
        }
    }

    #[test]
    fn hosts_are_read_with_and_without_ports() {
        for (host, part) in [
            ("a:1", "a"),
            ("a", "a"),
            ("[::1]:8554", "[::1]"),
            ("[::1]", "[::1]"),
            ("10.0.0.1:8554", "10.0.0.1"),
        ] {
            assert_eq!(host_part(host), part, "{host}");
        }
    }
}
