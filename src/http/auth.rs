//! Who may do what: two tokens (read-only and admin), browser sessions
//! behind a login form, CSRF tokens on every state change a browser makes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::html::{self, Page};
use super::AppState;

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Read everything.
    Read,
    /// Read, approve and reject actions, add and expire silences, start
    /// migrations.
    Admin,
}

impl Role {
    /// `read` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }
}

/// The two tokens.
#[derive(Clone)]
pub struct Tokens {
    admin: String,
    read: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(..)")
    }
}

/// Where generated tokens are kept.
pub fn token_path(data: &Path) -> PathBuf {
    data.join("http").join("tokens.toml")
}

#[derive(serde::Deserialize, serde::Serialize)]
struct TokenFile {
    admin_token: String,
    read_token: String,
}

/// The shortest token accepted from the configuration.
const MIN_TOKEN: usize = 16;

impl Tokens {
    /// The configured tokens; a missing one is read from the data folder's
    /// token file, or generated and stored there (owner-only) on first
    /// start. Returns the file when it is in use.
    pub fn load_or_generate(
        data: &Path,
        admin: Option<&str>,
        read: Option<&str>,
    ) -> Result<(Tokens, Option<PathBuf>), String> {
        for (name, token) in [("admin_token", admin), ("read_token", read)] {
            if let Some(t) = token {
                if t.trim().len() < MIN_TOKEN {
                    return Err(format!(
                        "[http] {name} is shorter than {MIN_TOKEN} characters: use a long random string (or leave it out and relive generates one)"
                    ));
                }
            }
        }
        if let (Some(a), Some(r)) = (admin, read) {
            if a == r {
                return Err("[http] admin_token and read_token must differ".into());
            }
            return Ok((
                Tokens {
                    admin: a.trim().to_string(),
                    read: r.trim().to_string(),
                },
                None,
            ));
        }
        let path = token_path(data);
        let stored = match std::fs::read_to_string(&path) {
            Ok(text) => Some(toml::from_str::<TokenFile>(&text).map_err(|e| {
                format!(
                    "{} is not a token file ({e}); delete it to have new tokens generated",
                    path.display()
                )
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let stored = match stored {
            Some(s) => s,
            None => {
                let file = TokenFile {
                    admin_token: random_hex(32)?,
                    read_token: random_hex(32)?,
                };
                write_private(&path, &toml::to_string(&file).map_err(|e| e.to_string())?)?;
                file
            }
        };
        Ok((
            Tokens {
                admin: admin.unwrap_or(&stored.admin_token).trim().to_string(),
                read: read.unwrap_or(&stored.read_token).trim().to_string(),
            },
            Some(path),
        ))
    }

    /// The role a presented token has, compared in constant time.
    pub fn role_of(&self, presented: &str) -> Option<Role> {
        let admin = same(presented.as_bytes(), self.admin.as_bytes());
        let read = same(presented.as_bytes(), self.read.as_bytes());
        if admin {
            Some(Role::Admin)
        } else if read {
            Some(Role::Read)
        } else {
            None
        }
    }
}

/// Equal bytes, in time that depends on the length only.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `bytes` random bytes from the OS, hex.
pub(crate) fn random_hex(bytes: usize) -> Result<String, String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| format!("no random numbers from the OS: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(&tmp)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A browser's login.
#[derive(Debug, Clone)]
struct Session {
    role: Role,
    csrf: String,
    expires: Instant,
}

/// Sessions in memory (a restart asks browsers to log in again).
#[derive(Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

/// At most this many sessions; expired ones go first.
const MAX_SESSIONS: usize = 10_000;

impl Sessions {
    fn create(&self, role: Role, hours: u64) -> Result<(String, Session), String> {
        let id = random_hex(32)?;
        let session = Session {
            role,
            csrf: random_hex(32)?,
            expires: Instant::now() + Duration::from_secs(hours * 3600),
        };
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_SESSIONS {
            let now = Instant::now();
            map.retain(|_, s| s.expires > now);
            if map.len() >= MAX_SESSIONS {
                // The oldest go: a flood of logins cannot grow memory.
                if let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, s)| s.expires)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&oldest);
                }
            }
        }
        map.insert(id.clone(), session.clone());
        Ok((id, session))
    }

    fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

/// Who is asking, for handlers (a request extension).
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) role: Role,
    /// The session's CSRF token (browser sessions only).
    pub(crate) csrf: Option<String>,
    /// Who decides, for the audit log.
    pub(crate) who: String,
}

const COOKIE: &str = "relive_session";

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A request from another site: its `Origin` names a host other than ours.
pub(crate) fn cross_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    origin_host != host
}

fn public(path: &str) -> bool {
    matches!(
        path,
        // A signed approval link is its own permission (http::link).
        "/healthz" | "/login" | "/approve" | "/assets/app.js" | "/assets/app.css"
    )
}

fn wants_json(path: &str) -> bool {
    path.starts_with("/api/") || path == "/metrics" || path == "/openapi.json"
}

/// The middleware in front of every route: authenticates, checks CSRF and
/// the role, and hands the handler a [`Caller`].
pub(crate) async fn guard(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    if public(&path) {
        return next.run(request).await;
    }
    let headers = request.headers();
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD);
    let caller = if let Some(token) = bearer(headers) {
        match state.tokens.role_of(token) {
            Some(role) => Caller {
                role,
                csrf: None,
                who: format!("{} token", role.as_str()),
            },
            None => return unauthorized(&path, "the token is not valid"),
        }
    } else if let Some(session) = cookie(headers, COOKIE).and_then(|id| state.sessions.get(&id)) {
        if changes && path != "/logout" {
            // A browser's state change carries the session's CSRF token in
            // a header a cross-site form cannot set.
            let sent = headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !same(sent.as_bytes(), session.csrf.as_bytes()) || cross_origin(headers) {
                return error(
                    StatusCode::FORBIDDEN,
                    &path,
                    "missing or wrong CSRF token: reload the page",
                );
            }
        }
        Caller {
            role: session.role,
            csrf: Some(session.csrf),
            who: format!("{} (web)", session.role.as_str()),
        }
    } else if wants_json(&path) || changes {
        return unauthorized(&path, "this needs a token: Authorization: Bearer TOKEN");
    } else {
        let target = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        return login_redirect(&target);
    };
    if changes && path.starts_with("/api/") && caller.role != Role::Admin {
        return error(
            StatusCode::FORBIDDEN,
            &path,
            "the read-only token cannot change anything: use the admin token",
        );
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

fn login_redirect(target: &str) -> Response {
    let location = format!("/login?next={}", percent(target));
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// Percent-encodes everything but unreserved characters and `/`.
pub(crate) fn percent(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unauthorized(path: &str, why: &str) -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, path, why);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"relive\""),
    );
    response
}

fn error(status: StatusCode, path: &str, why: &str) -> Response {
    if wants_json(path) {
        super::api::ApiError::new(status, why).into_response()
    } else {
        (
            status,
            html::page(
                &Page::new("relive", None),
                &format!(
                    "<h1>{}</h1><p>{}</p><p><a href=\"/login\">Log in</a></p>",
                    status.as_u16(),
                    html::text(why)
                ),
            ),
        )
            .into_response()
    }
}

/// Where a login goes afterwards: a path on this site only.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".to_string(),
    }
}

#[derive(serde::Deserialize, Default)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

/// `GET /login`: one field named `token`.
pub(crate) async fn login_page(
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Response {
    login_form(StatusCode::OK, q.next.as_deref(), None)
}

fn login_form(status: StatusCode, next: Option<&str>, problem: Option<&str>) -> Response {
    let next = safe_next(next);
    let body = format!(
        r#"<main class="login"><h1>relive</h1>
<form method="post" action="/login">
<label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<input type="hidden" name="next" value="{}">
{}
<button type="submit">Log in</button>
</form>
<p class="hint">The tokens are in <code>[http]</code> of relive.toml, or in the token file under the data folder that <code>relive serve</code> names when it starts.</p></main>"#,
        html::attr(&next),
        problem
            .map(|p| format!(r#"<p class="error" role="alert">{}</p>"#, html::text(p)))
            .unwrap_or_default()
    );
    (status, html::page(&Page::new("Log in", None), &body)).into_response()
}

#[derive(serde::Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /login`: a valid token gets a session cookie.
pub(crate) async fn login(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: Result<axum::extract::Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(axum::extract::Form(form)) = form else {
        return login_form(
            StatusCode::BAD_REQUEST,
            None,
            Some("send the form's token field"),
        );
    };
    if cross_origin(&headers) {
        return login_form(StatusCode::FORBIDDEN, None, Some("log in from this site"));
    }
    let Some(role) = state.tokens.role_of(form.token.trim()) else {
        // Slows guessing down; the comparison itself is constant-time.
        tokio::time::sleep(Duration::from_millis(300)).await;
        tracing::warn!("web login with an unknown token");
        return login_form(
            StatusCode::UNAUTHORIZED,
            form.next.as_deref(),
            Some("That token is not valid."),
        );
    };
    let (id, _) = match state.sessions.create(role, state.session_hours) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "/login", &e),
    };
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        state.session_hours * 3600
    );
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, safe_next(form.next.as_deref())),
        ],
    )
        .into_response()
}

#[derive(serde::Deserialize)]
pub(crate) struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /logout`: ends the session (the form carries its CSRF token).
pub(crate) async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: Result<axum::extract::Form<LogoutForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let csrf = form.map(|f| f.0.csrf).unwrap_or_default();
    if let Some(id) = cookie(&headers, COOKIE) {
        if let Some(session) = state.sessions.get(&id) {
            if !same(csrf.as_bytes(), session.csrf.as_bytes()) {
                return error(
                    StatusCode::FORBIDDEN,
                    "/logout",
                    "missing or wrong CSRF token",
                );
            }
            state.sessions.remove(&id);
        }
    }
    (
        StatusCode::SEE_OTHER,
        [
            (
                header::SET_COOKIE,
                format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
            ),
            (header::LOCATION, "/login".to_string()),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_generated_once_owner_only_and_configured_ones_win() {
        let dir = tempfile::tempdir().unwrap();
        let (a, path) = Tokens::load_or_generate(dir.path(), None, None).unwrap();
        let path = path.unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (b, _) = Tokens::load_or_generate(dir.path(), None, None).unwrap();
        assert_eq!(a.admin, b.admin);
        assert_ne!(a.admin, a.read);
        assert_eq!(a.admin.len(), 64);
        let configured = "c0nfigured-admin-token";
        let (c, _) = Tokens::load_or_generate(dir.path(), Some(configured), None).unwrap();
        assert_eq!(c.role_of(configured), Some(Role::Admin));
        assert_eq!(c.role_of(&a.read), Some(Role::Read));
        assert_eq!(c.role_of(&a.admin), None);
        assert!(Tokens::load_or_generate(dir.path(), Some("short"), None).is_err());
        let other = tempfile::tempdir().unwrap();
        let (d, _) = Tokens::load_or_generate(other.path(), None, None).unwrap();
        assert_ne!(d.admin, a.admin, "no fixed secret");
    }

    #[test]
    fn a_login_goes_back_to_this_site_only() {
        assert_eq!(safe_next(Some("/incidents/abc?x=1")), "/incidents/abc?x=1");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn cookies_and_bearer_tokens_are_read_exactly() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; relive_session=abc; b=2".parse().unwrap(),
        );
        h.insert(header::AUTHORIZATION, "bearer  xyz ".parse().unwrap());
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("abc"));
        assert_eq!(bearer(&h), Some("xyz"));
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        h.insert(header::HOST, "127.0.0.1:7300".parse().unwrap());
        assert!(cross_origin(&h));
        h.insert(header::ORIGIN, "http://127.0.0.1:7300".parse().unwrap());
        assert!(!cross_origin(&h));
    }
}
