//! The proxy's own pages: the CA certificate, how to install it, and the review
//! request a pupil sends from a block page.
//!
//! In: an origin-form request (or an absolute-form one naming the proxy itself).
//! Out: `GET /hallpass-ca.crt` (the CA certificate in PEM, never the key), `GET /`
//! (install instructions), `GET /review?ref=...` (records a review request as a
//! block event of kind `review-request` and thanks the pupil), `GET /proxy.pac`
//! and `GET /wpad.dat` (automatic proxy configuration, see [`crate::pac`]). Refused: other
//! paths (404) and other methods (405). No login is needed: devices must be able
//! to fetch the certificate before anything else works.
use std::sync::Arc;

use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode, header};
use policy::event::BlockKind;

use crate::Body;
use crate::block::{PageKind, escape, page_response};
use crate::request::{ConnInfo, Refusal, Shared, plain_refusal};
use crate::snapshot::Snapshot;

/// The path the CA certificate is served at.
pub const CA_PATH: &str = "/hallpass-ca.crt";

/// Serves one of the proxy's own pages.
pub(crate) async fn serve(
    shared: &Arc<Shared>,
    conn: &ConnInfo,
    snap: &Snapshot,
    parts: &Parts,
    path_and_query: &str,
) -> Response<Body> {
    if parts.method != Method::GET && parts.method != Method::HEAD {
        let mut r = plain_refusal(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    match path {
        CA_PATH => ca_certificate(shared),
        p if crate::pac::PATHS.contains(&p) => pac_file(shared, conn, snap),
        "/" => page_response(StatusCode::OK, instructions(shared, conn)),
        "/review" => review(shared, conn, snap, parts, query).await,
        _ => plain_refusal(StatusCode::NOT_FOUND, "no such page on the web filter"),
    }
}

fn ca_certificate(shared: &Shared) -> Response<Body> {
    let Some(leaves) = &shared.leaves else {
        return plain_refusal(
            StatusCode::NOT_FOUND,
            "HTTPS interception is off: there is no certificate to install",
        );
    };
    let mut response = Response::new(crate::full_body(leaves.ca().cert_pem().to_string()));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-x509-ca-cert"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"hallpass-ca.crt\""),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The PAC file of the running configuration (a reload changes it).
fn pac_file(shared: &Shared, conn: &ConnInfo, snap: &Snapshot) -> Response<Body> {
    let text = crate::pac::render(&snap.config.pac, &shared.own_authority(conn));
    let mut response = Response::new(crate::full_body(text));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::pac::MIME),
    );
    // Devices re-read it when it changes; they need not ask on every request.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    response
}

fn instructions(shared: &Shared, conn: &ConnInfo) -> String {
    let link = format!("http://{}{CA_PATH}", shared.own_authority(conn));
    let link = escape(&link);
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>School web filter</title></head><body>\n\
<h1>School web filter</h1>\n\
<p>This school's web filter checks secure (HTTPS) pages too. For that, each device must trust the school's certificate.</p>\n\
<p><a href=\"{link}\">Download the school certificate</a> ({link}), then install it as a trusted root certificate:</p>\n<ul>\n\
<li><b>Windows</b>: open the file, choose <i>Install Certificate</i>, <i>Local Machine</i>, and place it in <i>Trusted Root Certification Authorities</i>.</li>\n\
<li><b>macOS</b>: open the file in Keychain Access, add it to the <i>System</i> keychain, then set it to <i>Always Trust</i>.</li>\n\
<li><b>ChromeOS</b>: Settings, Privacy and security, Security, Manage certificates, Authorities, Import, and tick <i>Trust this certificate for identifying websites</i>.</li>\n\
<li><b>iOS / iPadOS</b>: open the file, install the profile in Settings, then enable it under General, About, Certificate Trust Settings.</li>\n\
<li><b>Android</b>: Settings, Security, Encryption and credentials, Install a certificate, CA certificate.</li>\n\
<li><b>Debian / Ubuntu</b>: copy it to <code>/usr/local/share/ca-certificates/hallpass-ca.crt</code> and run <code>update-ca-certificates</code>. Firefox: Settings, Privacy &amp; Security, Certificates, View Certificates, Authorities, Import.</li>\n\
</ul>\n<p>School-managed devices usually get the certificate through device management; ask the IT technician.</p>\n\
</body></html>\n"
    )
}

async fn review(
    shared: &Arc<Shared>,
    conn: &ConnInfo,
    snap: &Snapshot,
    parts: &Parts,
    query: &str,
) -> Response<Body> {
    let reference: String = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("ref="))
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(32)
        .collect();
    if reference.is_empty() {
        return plain_refusal(
            StatusCode::BAD_REQUEST,
            "a review request needs the block's reference (ref=...)",
        );
    }
    let identity =
        shared
            .auth
            .identify_quietly(&snap.policy, conn.peer.ip(), &parts.headers, &conn.login);
    let band = identity
        .as_ref()
        .and_then(|i| i.resolve(&snap.policy))
        .map(|(_, b)| b.name.to_string());
    // The review request is an event of its own; its page is not shown (the
    // thank-you page below is), so its own reference is only for the record.
    let _ = shared
        .refusal_page(
            conn,
            identity.as_ref(),
            band.as_deref(),
            Refusal {
                kind: BlockKind::ReviewRequest,
                page: PageKind::Blocked,
                reason: "review requested",
                url: format!("ref:{reference}"),
                method: "GET",
                verdict: None,
            },
        )
        .await;
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Review requested</title></head><body>\n\
<h1>Thank you</h1>\n<p>Your request to check this page has been sent to the school. Reference: <strong>{}</strong>.</p>\n\
<p>A member of staff will look at it. You can also tell your teacher the reference.</p>\n</body></html>\n",
        escape(&reference)
    );
    page_response(StatusCode::OK, html)
}
