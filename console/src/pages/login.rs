//! Sign-in and sign-out.
//!
//! Staff sign in with their own account from the accounts file (the proxy's
//! verifier: argon2id, the same back-off per name and address). Only accounts
//! named in `[console.roles]` get in; everyone else, a wrong password, a
//! disabled or unknown account all get the same answer. Passwords are never
//! logged or echoed back.
use std::time::Instant;

use axum::Extension;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use crate::Peer;
use crate::session::Staff;
use crate::web::{self, AppError, AppState, FormData, MaybeSession, local_target};

/// The sign-in page with `status`, returning to `next` afterwards. Starts an
/// anonymous session for the form's CSRF token.
pub fn form(app: &AppState, status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let session = match app.sessions.start(Instant::now()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "console: cannot start a session");
            return AppError::new(StatusCode::SERVICE_UNAVAILABLE, "cannot start a session")
                .into_response();
        }
    };
    let body = html! {
        section.card.login {
            @if let Some(e) = error { p.error role="alert" { (e) } }
            @if status == StatusCode::UNAUTHORIZED && error.is_none() {
                p.muted { "Sign in with your own hallpass account to continue." }
            }
            form.stack method="post" action="/login" {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name="next" value=(next);
                label { "Account name" input type="text" name="user" id="user" autocomplete="username" required maxlength="64"; }
                label { "Password" input type="password" name="password" id="password" autocomplete="current-password" required maxlength="1024"; }
                button type="submit" id="sign-in" { "Sign in" }
            }
        }
    };
    let mut r = (
        status,
        web::page("Sign in to the staff console", None, body),
    )
        .into_response();
    r.headers_mut()
        .append(header::SET_COOKIE, web::set_cookie(app.tls, session.id));
    r
}

/// `GET /login`.
pub async fn show(State(app): State<AppState>, Extension(s): Extension<MaybeSession>) -> Response {
    if s.0.is_some_and(|s| s.staff.is_some()) {
        return Redirect::to("/").into_response();
    }
    form(&app, StatusCode::OK, "/", None)
}

/// `POST /login`: checks the name and password (argon2 off the async
/// workers), then starts a new session (a new id: the anonymous one ends).
pub async fn submit(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Extension(session): Extension<MaybeSession>,
    Extension(form_data): Extension<FormData>,
) -> Result<Response, AppError> {
    form_data.only(&["user", "password", "next"])?;
    let user = form_data.one("user", 64)?.unwrap_or("").trim().to_string();
    let password = form_data
        .one("password", accounts::MAX_PASSWORD_BYTES)?
        .unwrap_or("")
        .to_string();
    let next = local_target(form_data.one("next", 512)?).to_string();
    let verifier = app.ctx.verifier.clone();
    let name = user.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let password = password;
        verifier.verify_slow(&name, password.as_bytes(), peer.0.ip(), Instant::now())
    })
    .await
    .map_err(|e| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("sign-in: {e}")))?;
    let failed = "The account name or password is wrong, or this account may not use the console.";
    match outcome {
        Ok(account) => match app.settings.roles.get(&*account.name) {
            Some(role) => {
                let old = session.0.map(|s| s.id);
                let staff = Staff {
                    name: account.name.to_string(),
                    role: *role,
                };
                let new = app
                    .sessions
                    .sign_in(old, staff, Instant::now())
                    .map_err(|e| AppError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
                tracing::info!(account = %account.name, role = %role, ip = %peer.0.ip(), "console: signed in");
                let mut r = Redirect::to(&next).into_response();
                r.headers_mut()
                    .append(header::SET_COOKIE, web::set_cookie(app.tls, new.id));
                Ok(r)
            }
            None => {
                tracing::warn!(account = %account.name, ip = %peer.0.ip(), "console: sign-in refused: no role in [console.roles]");
                Ok(form(&app, StatusCode::UNAUTHORIZED, &next, Some(failed)))
            }
        },
        Err(accounts::AuthFailure::Rejected) => {
            tracing::warn!(ip = %peer.0.ip(), "console: sign-in failed");
            Ok(form(&app, StatusCode::UNAUTHORIZED, &next, Some(failed)))
        }
        Err(accounts::AuthFailure::Throttled { retry_after }) => {
            let secs = retry_after.as_secs().max(1);
            let mut r = form(
                &app,
                StatusCode::TOO_MANY_REQUESTS,
                &next,
                Some(&format!(
                    "Too many failed sign-ins for this name or computer: try again in {secs} seconds."
                )),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            Ok(r)
        }
    }
}

/// `POST /logout`: ends the session.
pub async fn logout(
    State(app): State<AppState>,
    Extension(session): Extension<MaybeSession>,
) -> Response {
    if let Some(s) = session.0 {
        app.sessions.end(s.id);
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut()
        .append(header::SET_COOKIE, web::clear_cookie(app.tls));
    r
}
