//! Authenticate: who is browsing, as a group name.
//!
//! In: the policy snapshot, the client's address and the request headers. Out: an
//! [`Identity`] (an account name when there is a login, and always a group), or
//! [`AuthError`], which the caller answers with [`challenge`]: a `407` with
//! `Proxy-Authenticate: Basic realm="hallpass"` and nothing forwarded. There is no
//! default: an address that no `[[subnets]]` entry maps is refused, never given a
//! staff band.
//!
//! Today the identity comes from the client's subnet only. Logins
//! (`Proxy-Authorization: Basic` against argon2id hashes) slot in here as a first
//! step of [`identify`], ahead of the subnet lookup; callers do not change. The
//! header is never logged and never forwarded (see [`forward`](crate::forward)).
use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use policy::{Band, GroupId, Policy};

use crate::Body;

/// Who is browsing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The account name, when a login identified the person.
    pub who: Option<Arc<str>>,
    /// The group name. Kept as a name, not a [`GroupId`]: a tunnel outlives a
    /// policy reload, and ids are only meaningful within one snapshot.
    pub group: Arc<str>,
}

impl Identity {
    /// The group's id and band in `policy`, or `None` if a reload removed the group
    /// (the caller fails closed).
    pub fn resolve<'p>(&self, policy: &'p Policy) -> Option<(GroupId, &'p Band)> {
        let id = policy.group_id(&self.group)?;
        Some((id, policy.band_of(id)))
    }
}

/// Why nobody could be identified.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No login and no `[[subnets]]` entry for the address.
    #[error("no login, and {0} is in no configured subnet")]
    Unknown(IpAddr),
}

/// Identifies the person behind a request.
pub fn identify(
    policy: &Policy,
    client_ip: IpAddr,
    headers: &HeaderMap,
) -> Result<Identity, AuthError> {
    // Logins are not implemented yet: a Proxy-Authorization header is ignored
    // (and stripped before forwarding), so it can neither help nor harm.
    let _ = headers;
    let id = policy
        .group_for_ip(client_ip)
        .ok_or(AuthError::Unknown(client_ip))?;
    Ok(Identity {
        who: None,
        group: policy.group(id).name.clone(),
    })
}

/// The `407` every authentication failure gets: the same reply each time, so it
/// says nothing about which part failed.
pub fn challenge() -> Response<Body> {
    let mut response = Response::new(crate::full_body(
        "Proxy authentication required: sign in to the school's web filter.\n",
    ));
    *response.status_mut() = StatusCode::PROXY_AUTHENTICATION_REQUIRED;
    let headers = response.headers_mut();
    headers.insert(
        header::PROXY_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"hallpass\""),
    );
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
