//! What every request goes through: the session cookie, the CSRF check of
//! every POST, body and field limits, the security headers, the sign-in wall,
//! and the error pages.
//!
//! In: a request. Out: the handler's response with the headers below, or a
//! refusal: `401` (no live session: the sign-in form, so a browser can carry
//! on), `403` (a session without the right role, a missing or wrong CSRF
//! token), `400` (a malformed form: not UTF-8, an unknown or repeated field, a
//! bad value), `413` (a body over [`MAX_BODY`]), `415` (a POST that is not a
//! form), `422` (a field over its length limit). A refused POST changes
//! nothing: the check runs before any handler.
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use incidents::Role;
use maud::{DOCTYPE, Markup, html};

use crate::App;
use crate::session::{Session, SessionId, Staff};

/// The largest form body accepted (the longest form, a review, is a few KiB).
pub const MAX_BODY: usize = 16 * 1024;

/// The Content-Security-Policy of every response: nothing inline, nothing
/// from elsewhere, no framing. Charts are inline SVG drawn on the server.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The shared state of the console's handlers.
pub type AppState = Arc<App>;

/// The session a request carries, if any (set by [`guard`]).
#[derive(Clone, Debug)]
pub struct MaybeSession(pub Option<Session>);

/// A refusal or failure, shown as a small page.
#[derive(Debug)]
pub struct AppError {
    /// The status.
    pub status: StatusCode,
    /// What went wrong, for the person reading the page.
    pub message: String,
}

impl AppError {
    /// An error with a status and a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> AppError {
        AppError {
            status,
            message: message.into(),
        }
    }

    /// `400`: a malformed request.
    pub fn bad(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::BAD_REQUEST, message)
    }

    /// `403`: not for this role.
    pub fn forbidden(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::FORBIDDEN, message)
    }
}

impl From<incidents::Error> for AppError {
    fn from(e: incidents::Error) -> AppError {
        use incidents::Error as E;
        let status = match &e {
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::Forbidden { .. } => StatusCode::FORBIDDEN,
            E::InvalidTransition { .. } | E::Conflict(_) => StatusCode::CONFLICT,
            _ => {
                tracing::error!(error = %e, "console: incident store");
                return AppError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the incident store is not answering; try again shortly",
                );
            }
        };
        AppError::new(status, e.to_string())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let title = self
            .status
            .canonical_reason()
            .unwrap_or("Error")
            .to_string();
        let body = html! {
            (DOCTYPE)
            html lang="en" {
                head { meta charset="utf-8"; title { "hallpass: " (title) } link rel="stylesheet" href="/static/console.css"; }
                body {
                    main {
                        h1 { (self.status.as_u16()) " " (title) }
                        p.error { (self.message) }
                        p { a href="/" { "Back to the console" } }
                    }
                }
            }
        };
        (self.status, body).into_response()
    }
}

/// The cookie's name: `__Host-` (Secure, host-only, path `/`) over TLS.
pub fn cookie_name(tls: bool) -> &'static str {
    if tls {
        "__Host-hallpass-session"
    } else {
        "hallpass-session"
    }
}

/// The `Set-Cookie` value for a session.
pub fn set_cookie(tls: bool, id: SessionId) -> HeaderValue {
    let secure = if tls { "; Secure" } else { "" };
    let value = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict{secure}",
        cookie_name(tls),
        id.to_cookie()
    );
    HeaderValue::from_str(&value).expect("hex ids make a valid header")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(tls: bool) -> HeaderValue {
    let secure = if tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}",
        cookie_name(tls)
    ))
    .expect("a valid header")
}

/// The session id the request's cookie names (not yet looked up).
pub fn cookie_session(headers: &HeaderMap, tls: bool) -> Option<SessionId> {
    let name = cookie_name(tls);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| SessionId::from_cookie(v))
}

/// A parsed form body (set by [`guard`] for every POST, after the CSRF check).
#[derive(Clone, Debug, Default)]
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    /// Refuses fields other than `allowed` (and `csrf`).
    pub fn only(&self, allowed: &[&str]) -> Result<(), AppError> {
        match self
            .0
            .iter()
            .find(|(k, _)| k != "csrf" && !allowed.contains(&k.as_str()))
        {
            Some((k, _)) => Err(AppError::bad(format!("unexpected form field `{k}`"))),
            None => Ok(()),
        }
    }

    /// The one value of `key` (at most `max` characters, no control
    /// characters but newlines and tabs), or `None`. Refused: a repeated key.
    pub fn one(&self, key: &str, max: usize) -> Result<Option<&str>, AppError> {
        let mut values = self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v);
        let value = values.next();
        if values.next().is_some() {
            return Err(AppError::bad(format!("form field `{key}` is repeated")));
        }
        match value {
            Some(v) => check_field(key, v, max).map(Some),
            None => Ok(None),
        }
    }

    /// Every value of `key`.
    pub fn all(&self, key: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Checks one text field: length (in characters) and no control characters
/// other than tab and newline.
pub fn check_field<'a>(key: &str, value: &'a str, max: usize) -> Result<&'a str, AppError> {
    if value.chars().count() > max {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("field `{key}` is longer than {max} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        return Err(AppError::bad(format!(
            "field `{key}` contains control characters"
        )));
    }
    Ok(value)
}

/// The middleware every request passes: finds the session, checks every
/// POST's body and CSRF token before any handler runs, and sets the
/// security headers on every response.
pub async fn guard(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let mut response = match check(&app, req).await {
        Ok(req) => next.run(req).await,
        Err(refusal) => refusal,
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if app.tls {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

async fn check(app: &AppState, mut req: Request) -> Result<Request, Response> {
    let session =
        cookie_session(req.headers(), app.tls).and_then(|id| app.sessions.get(id, Instant::now()));
    req.extensions_mut().insert(MaybeSession(session.clone()));
    if req.method() != Method::POST {
        return Ok(req);
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected a form (application/x-www-form-urlencoded)",
        )
        .into_response());
    }
    let (parts, body) = req.into_parts();
    let bytes = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Err(AppError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the form is larger than {MAX_BODY} bytes"),
            )
            .into_response());
        }
    };
    let form = parse_form(&bytes).map_err(IntoResponse::into_response)?;
    let Some(session) = session else {
        return Err(sign_in_wall(app, "/").await);
    };
    let token = form.one("csrf", 128).map_err(IntoResponse::into_response)?;
    if !token.is_some_and(|t| session.csrf_matches(t)) {
        tracing::warn!(path = %parts.uri.path(), "console: POST refused: missing or wrong CSRF token");
        return Err(AppError::forbidden(
            "the form's security token is missing or out of date: reload the page and try again",
        )
        .into_response());
    }
    let mut req = Request::from_parts(parts, Body::from(bytes));
    req.extensions_mut().insert(form);
    Ok(req)
}

/// Parses `application/x-www-form-urlencoded`, refusing bytes that do not
/// decode to UTF-8 (rather than replacing them).
pub fn parse_form(bytes: &[u8]) -> Result<FormData, AppError> {
    let mut fields = Vec::new();
    for (k, v) in form_urlencoded::parse(bytes) {
        if k.contains('\u{FFFD}') || v.contains('\u{FFFD}') {
            return Err(AppError::bad("the form is not valid UTF-8"));
        }
        if k.len() > 64 {
            return Err(AppError::bad("a form field name is too long"));
        }
        fields.push((k.into_owned(), v.into_owned()));
    }
    if fields.len() > 64 {
        return Err(AppError::bad("the form has too many fields"));
    }
    Ok(FormData(fields))
}

/// The `401` answer to a request without a signed-in session: the sign-in
/// form itself (with a fresh anonymous session for its CSRF token), which
/// returns to `next` after sign-in.
pub async fn sign_in_wall(app: &AppState, next: &str) -> Response {
    crate::pages::login::form(app, StatusCode::UNAUTHORIZED, next, None)
}

/// A request by signed-in staff.
#[derive(Clone, Debug)]
pub struct Signed {
    /// Who.
    pub staff: Staff,
    /// Their session (for the CSRF token of the forms on the page).
    pub session: Session,
}

impl Signed {
    /// Refuses roles not in `roles` with `403`, saying which roles may.
    pub fn require(&self, roles: &[Role], what: &str) -> Result<(), AppError> {
        if roles.contains(&self.staff.role) {
            Ok(())
        } else {
            Err(AppError::forbidden(format!(
                "{what} is for {}; you are signed in as {}",
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                self.staff.role
            )))
        }
    }

    /// As an actor on the incident store.
    pub fn actor(&self) -> incidents::Actor {
        incidents::Actor::new(self.staff.name.clone(), self.staff.role)
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let session = parts
            .extensions
            .get::<MaybeSession>()
            .and_then(|s| s.0.clone());
        match session {
            Some(session) => match session.staff.clone() {
                // The role is read from the settings on every request, so a
                // role removed from [console.roles] takes effect at the next
                // restart even for a session that is still open.
                Some(staff) if app.settings.roles.get(&staff.name) == Some(&staff.role) => {
                    Ok(Signed { staff, session })
                }
                _ => {
                    let next = local_target(parts.uri.path_and_query().map(|p| p.as_str()));
                    Err(sign_in_wall(app, next).await)
                }
            },
            None => {
                let next = local_target(parts.uri.path_and_query().map(|p| p.as_str()));
                Err(sign_in_wall(app, next).await)
            }
        }
    }
}

/// A path on this console to return to after sign-in: `/…` only, never
/// `//host` or a backslash trick that a browser would read as another site.
pub fn local_target(target: Option<&str>) -> &str {
    match target {
        Some(t)
            if t.starts_with('/')
                && !t.starts_with("//")
                && !t.contains('\\')
                && t.len() <= 512
                && !t.chars().any(char::is_control)
                && t != "/login" =>
        {
            t
        }
        _ => "/",
    }
}

/// The page frame: title, navigation for the role, sign-out form.
pub fn page(title: &str, who: Option<&Signed>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "hallpass: " (title) }
                link rel="stylesheet" href="/static/console.css";
            }
            body {
                header.top {
                    span.brand { "hallpass" }
                    @if let Some(s) = who {
                        nav {
                            a href="/" { "Dashboard" }
                            @if crate::pages::blocks::ROLES.contains(&s.staff.role) {
                                a href="/blocks" { "Block report" }
                            }
                            a href="/incidents" { "Incidents" }
                            a href="/requests" { "Review requests" }
                            a href="/filter-checks" { "Filter checks" }
                            a href="/policy" { "Policy" }
                        }
                        form.signout method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(s.session.csrf);
                            span { (s.staff.name) " (" (s.staff.role) ") " }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A time in ms since the epoch as `YYYY-MM-DD HH:MM UTC`.
pub fn when(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_targets_stay_on_this_console() {
        assert_eq!(
            local_target(Some("/blocks?group=year5")),
            "/blocks?group=year5"
        );
        for bad in [
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example/",
            "",
            "/login",
        ] {
            assert_eq!(local_target(Some(bad)), "/", "{bad}");
        }
        assert_eq!(local_target(None), "/");
    }

    #[test]
    fn forms_refuse_bad_utf8_repeats_and_long_fields() {
        assert!(parse_form(b"a=%FF").is_err());
        let f = parse_form(b"csrf=x&result=ok&action=a&action=b").expect("form");
        assert_eq!(f.one("result", 10).expect("one"), Some("ok"));
        assert_eq!(f.all("action").collect::<Vec<_>>(), ["a", "b"]);
        assert!(f.one("action", 10).is_err());
        assert!(f.only(&["result"]).is_err());
        assert!(f.only(&["result", "action"]).is_ok());
        let e = f.one("result", 1).expect_err("too long");
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(check_field("x", "a\u{0}b", 10).is_err());
        assert!(check_field("x", "line\nline", 10).is_ok());
    }

    #[test]
    fn times_read_in_utc() {
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
        assert_eq!(when(1_700_000_000_000), "2023-11-14 22:13 UTC");
    }
}
