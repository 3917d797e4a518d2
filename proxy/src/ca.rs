//! The school's interception CA and the leaf certificates it signs.
//!
//! In: the state directory. Out: [`init`] creates `ca/hallpass-ca.key` (mode
//! 0600) and `ca/hallpass-ca.crt`; [`CertificateAuthority::load`] reads them back;
//! [`LeafCache`] mints and caches one leaf per host name. Refused: overwriting an
//! existing CA without `force`, and loading a key file that its group or others
//! can read, or that another user owns (the proxy then refuses to start).
//!
//! What is minted, and why:
//! - The CA is ECDSA P-256 (a TLS 1.3 handshake measured ~75 µs against ~320 µs
//!   for RSA-2048) with `pathLen 0`, so even a stolen CA key cannot create
//!   intermediate CAs, and key usages limited to signing certificates and CRLs.
//! - Each leaf has its own fresh P-256 key, never the CA key: a leaf key that
//!   leaks (they live in memory only) exposes one name for a few days.
//! - A leaf's SAN is exactly the name (an IP SAN for an IP literal), it is for
//!   `serverAuth` only and valid for `leaf_days` days (backdated an hour for
//!   clients with a slow clock).
//! - The cache is bounded (oldest out first) and mints one leaf per name at a
//!   time: concurrent handshakes for a new name wait for the one mint.
use std::collections::{HashMap, VecDeque};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use policy::host::CanonicalHost;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::OnceCell;

/// The CA's file names inside the state directory.
pub const CA_DIR: &str = "ca";
/// The CA key file name (mode 0600; never served).
pub const KEY_FILE: &str = "hallpass-ca.key";
/// The CA certificate file name (served at `/hallpass-ca.crt`).
pub const CERT_FILE: &str = "hallpass-ca.crt";

/// What went wrong with the CA.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// `init` found a CA already there.
    #[error(
        "{0} already exists: refusing to overwrite the school CA (every device trusts it); pass --force to replace it"
    )]
    Exists(PathBuf),
    /// No CA in the state directory.
    #[error("no CA at {0}: run `hallpass ca init` first, or set `intercept = false` in [proxy]")]
    Missing(PathBuf),
    /// The key file's permissions let other users read it.
    #[error("{path} has mode {mode:o}: the CA key must be readable by its owner only (chmod 600)")]
    KeyReadableByOthers {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file belongs to another user.
    #[error(
        "{path} is owned by uid {owner}, but the proxy runs as uid {me}: the CA key must belong to the service user"
    )]
    KeyOwner {
        /// The key file.
        path: PathBuf,
        /// The file's owner.
        owner: u32,
        /// This process's user.
        me: u32,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The key and certificate do not belong together.
    #[error("{0}: the certificate does not match the CA key")]
    Mismatch(PathBuf),
    /// Generating, parsing or signing failed.
    #[error("certificate error: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused a minted leaf.
    #[error("tls configuration error: {0}")]
    Tls(#[from] rustls::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where `init` wrote the CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaFiles {
    /// The certificate (PEM): install it on every device.
    pub cert: PathBuf,
    /// The private key (PEM, mode 0600).
    pub key: PathBuf,
}

/// The CA files' paths under a state directory.
pub fn ca_files(state_dir: &Path) -> CaFiles {
    let dir = state_dir.join(CA_DIR);
    CaFiles {
        cert: dir.join(CERT_FILE),
        key: dir.join(KEY_FILE),
    }
}

/// Creates the school CA in `state_dir/ca/`. Refuses to replace an existing one
/// unless `force`. `name` goes into the certificate's common name (the school's
/// name helps a technician recognise it in a browser's certificate list).
pub fn init(state_dir: &Path, name: &str, force: bool) -> Result<CaFiles, CaError> {
    let files = ca_files(state_dir);
    if !force && (files.key.exists() || files.cert.exists()) {
        return Err(CaError::Exists(files.key));
    }
    let dir = state_dir.join(CA_DIR);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err(&dir))?;

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cert = ca_params(name)?.self_signed(&key)?;
    write_new(&files.key, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&files.cert, cert.pem().as_bytes(), 0o644)?;
    Ok(files)
}

fn ca_params(name: &str) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("{name} web filter CA (hallpass)"),
    );
    dn.push(DnType::OrganizationName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    // Ten years: replacing the CA means reinstalling it on every device.
    params.not_after = now + time::Duration::days(3650);
    Ok(params)
}

/// Writes a file through a temporary name and a rename, so a crash never leaves
/// half a key, and the key is never briefly readable by others.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// The loaded CA: signs leaves.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Loads the CA from `state_dir/ca/`, refusing a key file that others can
    /// read or that another user owns.
    pub fn load(state_dir: &Path) -> Result<Self, CaError> {
        let files = ca_files(state_dir);
        let meta = match std::fs::metadata(&files.key) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CaError::Missing(files.key));
            }
            Err(e) => {
                return Err(CaError::Io {
                    path: files.key,
                    source: e,
                });
            }
        };
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CaError::KeyReadableByOthers {
                path: files.key,
                mode,
            });
        }
        // The owner of /proc/self is this process's effective user (Linux); where
        // there is no /proc the mode check above stands alone.
        if let Ok(me) = std::fs::metadata("/proc/self").map(|m| m.uid()) {
            if meta.uid() != me {
                return Err(CaError::KeyOwner {
                    path: files.key,
                    owner: meta.uid(),
                    me,
                });
            }
        }
        let key_pem = std::fs::read_to_string(&files.key).map_err(io_err(&files.key))?;
        let cert_pem = std::fs::read_to_string(&files.cert).map_err(io_err(&files.cert))?;
        Self::from_pem(&key_pem, &cert_pem).map_err(|e| match e {
            CaError::Mismatch(_) => CaError::Mismatch(files.cert.clone()),
            other => other,
        })
    }

    /// Builds a CA from PEM text (tests keep their CA in memory).
    pub fn from_pem(key_pem: &str, cert_pem: &str) -> Result<Self, CaError> {
        let key = KeyPair::from_pem(key_pem)?;
        let cert_der: CertificateDer<'static> =
            rustls::pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
                .map_err(|_| CaError::Certificate(rcgen::Error::CouldNotParseCertificate))?;
        // The certificate must carry this key's public key, or every leaf would fail.
        let public = key.public_key_raw();
        if !cert_der.windows(public.len()).any(|w| w == public) {
            return Err(CaError::Mismatch(PathBuf::new()));
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)?;
        Ok(CertificateAuthority {
            issuer,
            cert_der,
            cert_pem: cert_pem.to_string(),
        })
    }

    /// Creates a CA in memory (tests, benches).
    pub fn generate(name: &str) -> Result<Self, CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = ca_params(name)?.self_signed(&key)?;
        Self::from_pem(&key.serialize_pem(), &cert.pem())
    }

    /// The CA certificate in PEM, as served at `/hallpass-ca.crt`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate in DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Mints a leaf for one host: fresh P-256 key, SAN exactly `host`, serverAuth,
    /// valid for `days` days.
    pub fn mint(
        &self,
        host: &CanonicalHost,
        days: u32,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = vec![match host.ip() {
            Some(ip) => SanType::IpAddress(ip),
            None => SanType::DnsName(host.as_str().to_string().try_into()?),
        }];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host.as_str());
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(i64::from(days.max(1)));
        let cert = params.signed_by(&key, &self.issuer)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((vec![cert.der().clone(), self.cert_der.clone()], key_der))
    }
}

/// A minted leaf, ready for TLS handshakes with clients.
pub struct Leaf {
    /// ALPN `h2`, `http/1.1`.
    pub h2: Arc<ServerConfig>,
    /// ALPN `http/1.1` only.
    pub h1: Arc<ServerConfig>,
    minted: Instant,
}

impl Leaf {
    /// The server config offering h2 (when `h2`) or only HTTP/1.1.
    pub fn config(&self, h2: bool) -> Arc<ServerConfig> {
        if h2 { self.h2.clone() } else { self.h1.clone() }
    }

    /// When it was minted.
    pub fn minted(&self) -> Instant {
        self.minted
    }
}

type Slot = Arc<OnceCell<Arc<Leaf>>>;

/// A bounded cache of leaves by host name, minting one leaf per name at a time.
pub struct LeafCache {
    ca: Arc<CertificateAuthority>,
    days: u32,
    capacity: usize,
    slots: Mutex<(HashMap<String, Slot>, VecDeque<String>)>,
}

impl LeafCache {
    /// A cache of at most `capacity` leaves, each valid for `days` days.
    pub fn new(ca: Arc<CertificateAuthority>, days: u32, capacity: usize) -> Self {
        LeafCache {
            ca,
            days: days.max(1),
            capacity: capacity.max(1),
            slots: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// The CA behind the cache.
    pub fn ca(&self) -> &CertificateAuthority {
        &self.ca
    }

    /// The leaf for `host`, minting it if needed. A leaf is replaced once half its
    /// validity has passed, so a cached leaf never expires in a client's hands.
    pub async fn get(&self, host: &CanonicalHost) -> Result<Arc<Leaf>, CaError> {
        let slot = self.slot(host.as_str());
        let ca = self.ca.clone();
        let days = self.days;
        let host = host.clone();
        let leaf = slot
            .get_or_try_init(|| async move {
                // Minting is a key generation and a signature (~0.1 ms): cheap
                // enough for the async worker, and it runs once per name.
                let (chain, key) = ca.mint(&host, days)?;
                Ok::<_, CaError>(Arc::new(Leaf {
                    h2: Arc::new(server_config(
                        chain.clone(),
                        key.clone_key(),
                        &[b"h2", b"http/1.1"],
                    )?),
                    h1: Arc::new(server_config(chain, key, &[b"http/1.1"])?),
                    minted: Instant::now(),
                }))
            })
            .await?;
        Ok(leaf.clone())
    }

    fn slot(&self, name: &str) -> Slot {
        let max_age = Duration::from_secs(u64::from(self.days) * 86_400 / 2);
        let mut guard = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (map, order) = &mut *guard;
        if let Some(slot) = map.get(name) {
            let fresh = slot
                .get()
                .is_none_or(|leaf| leaf.minted.elapsed() < max_age);
            if fresh {
                return slot.clone();
            }
        }
        let slot: Slot = Arc::new(OnceCell::new());
        if map.insert(name.to_string(), slot.clone()).is_none() {
            order.push_back(name.to_string());
        }
        while map.len() > self.capacity {
            match order.pop_front() {
                Some(oldest) => {
                    map.remove(&oldest);
                }
                None => break,
            }
        }
        slot
    }

    /// How many leaves are cached.
    pub fn len(&self) -> usize {
        self.slots.lock().map(|g| g.0.len()).unwrap_or(0)
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> Result<ServerConfig, CaError> {
    let mut config = ServerConfig::builder_with_provider(crate::upstream::crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_a_private_key_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = init(dir.path(), "Test School", false).expect("init");
        let mode = std::fs::metadata(&files.key).expect("key").mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(
            init(dir.path(), "Test School", false),
            Err(CaError::Exists(_))
        ));
        let before = std::fs::read(&files.key).expect("key");
        init(dir.path(), "Test School", true).expect("forced");
        assert_ne!(
            before,
            std::fs::read(&files.key).expect("key"),
            "force makes a new key"
        );
        CertificateAuthority::load(dir.path()).expect("load");
    }

    #[test]
    fn load_refuses_a_key_others_can_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = init(dir.path(), "Test School", false).expect("init");
        std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        assert!(matches!(
            CertificateAuthority::load(dir.path()),
            Err(CaError::KeyReadableByOthers { mode: 0o644, .. })
        ));
        std::fs::remove_file(&files.key).expect("rm");
        assert!(matches!(
            CertificateAuthority::load(dir.path()),
            Err(CaError::Missing(_))
        ));
    }

    #[test]
    fn mismatched_key_and_certificate_are_refused() {
        let a = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let b = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let cert = ca_params("x")
            .expect("params")
            .self_signed(&a)
            .expect("cert");
        assert!(matches!(
            CertificateAuthority::from_pem(&b.serialize_pem(), &cert.pem()),
            Err(CaError::Mismatch(_))
        ));
    }

    /// Verifies a minted chain as a browser would, for `name`.
    fn verify(
        ca: &CertificateAuthority,
        chain: &[CertificateDer<'static>],
        name: &str,
    ) -> Result<(), rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der().clone()).expect("root");
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            crate::upstream::crypto_provider(),
        )
        .build()
        .expect("verifier");
        let name = rustls::pki_types::ServerName::try_from(name.to_string()).expect("name");
        let now = rustls::pki_types::UnixTime::now();
        use rustls::client::danger::ServerCertVerifier;
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &name, &[], now)
            .map(|_| ())
    }

    #[test]
    fn a_leaf_is_valid_for_exactly_its_name() {
        let ca = CertificateAuthority::generate("Test").expect("ca");
        let host = policy::host::canonicalize("www.example.test").expect("host");
        let (chain, _key) = ca.mint(&host, 7).expect("mint");
        assert_eq!(verify(&ca, &chain, "www.example.test"), Ok(()));
        for other in [
            "example.test",
            "a.www.example.test",
            "www.example.test.evil",
        ] {
            assert!(verify(&ca, &chain, other).is_err(), "{other}");
        }
        let ip = CanonicalHost::from_ipv4([192, 0, 2, 7].into());
        let (chain, _key) = ca.mint(&ip, 7).expect("mint");
        assert_eq!(verify(&ca, &chain, "192.0.2.7"), Ok(()), "IP SAN");
        assert!(verify(&ca, &chain, "192.0.2.8").is_err());
        // Another CA's leaf does not verify under this one.
        let other = CertificateAuthority::generate("Other").expect("ca");
        let (foreign, _) = other.mint(&host, 7).expect("mint");
        assert!(verify(&ca, &foreign, "www.example.test").is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_handshakes_for_a_new_name_share_one_mint() {
        let ca = Arc::new(CertificateAuthority::generate("Test").expect("ca"));
        let cache = Arc::new(LeafCache::new(ca, 7, 100));
        let host = CanonicalHost::from_ipv4([127, 0, 0, 9].into());
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let cache = cache.clone();
                let host = host.clone();
                tokio::spawn(async move { cache.get(&host).await.expect("leaf") })
            })
            .collect();
        let mut leaves = Vec::new();
        for task in tasks {
            leaves.push(task.await.expect("task"));
        }
        assert!(
            leaves.iter().all(|l| Arc::ptr_eq(l, &leaves[0])),
            "one leaf for all"
        );
    }

    #[tokio::test]
    async fn leaves_are_cached_bounded_and_distinct() {
        let ca = Arc::new(CertificateAuthority::generate("Test").expect("ca"));
        let cache = LeafCache::new(ca, 7, 2);
        let a = CanonicalHost::from_ipv4([127, 0, 0, 2].into());
        let b = CanonicalHost::from_ipv4([127, 0, 0, 3].into());
        let c = CanonicalHost::from_ipv4([127, 0, 0, 4].into());
        let first = cache.get(&a).await.expect("mint");
        let again = cache.get(&a).await.expect("cached");
        assert!(Arc::ptr_eq(&first, &again));
        cache.get(&b).await.expect("mint");
        cache.get(&c).await.expect("mint");
        assert_eq!(cache.len(), 2);
        let remint = cache.get(&a).await.expect("re-mint");
        assert!(!Arc::ptr_eq(&first, &remint), "evicted oldest");
    }
}
