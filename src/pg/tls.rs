//! TLS of pgtopo's own SQL connections (rustls through tokio-postgres-rustls), with libpq's
//! sslmode semantics:
//!
//! - `disable`: no TLS; `prefer`: TLS when the server offers it, certificate not checked;
//! - `require`: TLS, certificate not checked — unless `sslrootcert` is given, then as verify-ca
//!   (what libpq does when a root certificate file exists);
//! - `verify-ca`: the chain must lead to `sslrootcert`; `verify-full`: and the certificate's
//!   subjectAltName must name the host connected to (a DNS name or an IP address; rustls, unlike
//!   libpq, does not fall back on the subject's CN).
//!
//! A client certificate (`sslcert` + `sslkey`, PEM) is offered when the server asks for one. The
//! key file must not be readable by group or others (0640 is accepted when root owns it), as
//! libpq requires; files are read at each connection, so a renewed certificate is picked up.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::SslMode;

/// The TLS settings of one kind of connection, paths on this machine.
#[derive(Debug, Clone, Copy)]
pub struct TlsSettings<'a> {
    pub sslmode: SslMode,
    pub sslrootcert: Option<&'a Path>,
    pub sslcert: Option<&'a Path>,
    pub sslkey: Option<&'a Path>,
}

impl TlsSettings<'_> {
    /// No TLS (`sslmode=disable`): the pooler's admin console, the sandbox's own servers.
    pub fn disabled() -> Self {
        TlsSettings {
            sslmode: SslMode::Disable,
            sslrootcert: None,
            sslcert: None,
            sslkey: None,
        }
    }

    /// The sslmode tokio-postgres negotiates with (it knows disable, prefer and require; the
    /// certificate checks are the connector's).
    pub fn negotiation(&self) -> tokio_postgres::config::SslMode {
        match self.sslmode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        }
    }

    /// The check the server's certificate gets.
    fn check(&self) -> Check {
        match (self.sslmode, self.sslrootcert) {
            (SslMode::VerifyFull, _) => Check::Full,
            (SslMode::VerifyCa, _) | (SslMode::Require, Some(_)) => Check::Ca,
            _ => Check::None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    None,
    Ca,
    Full,
}

/// Why the TLS configuration could not be built. Names files, never their content.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {cause}")]
    #[diagnostic(code(pgtopo::tls::file))]
    File {
        what: &'static str,
        path: String,
        cause: String,
    },
    #[error("private key file {path} has group or world access (mode {mode:04o})")]
    #[diagnostic(
        code(pgtopo::tls::key_mode),
        help("chmod 0600 {path} (or 0640 with root as its owner), as libpq requires")
    )]
    KeyMode { path: String, mode: u32 },
    #[error("sslmode {0} needs sslrootcert")]
    #[diagnostic(code(pgtopo::tls::root))]
    NoRoot(&'static str),
    #[error("TLS configuration: {0}")]
    #[diagnostic(code(pgtopo::tls::config))]
    Config(String),
}

/// The connector for these settings.
pub fn connector(s: &TlsSettings<'_>) -> Result<MakeRustlsConnect, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let check = s.check();
    let verifier: Arc<dyn ServerCertVerifier> = match (check, s.sslrootcert) {
        (Check::None, _) => Arc::new(Unchecked(provider)),
        (_, None) => return Err(TlsError::NoRoot(s.sslmode.as_str())),
        (_, Some(root)) => {
            let roots = Arc::new(root_store(root)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            Arc::new(Verified {
                webpki,
                names: check == Check::Full,
            })
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (s.sslcert, s.sslkey) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(certs(cert, "certificate")?, private_key(key)?)
            .map_err(|e| TlsError::Config(format!("{}: {e}", cert.display())))?,
        _ => builder.with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

fn file_error(what: &'static str, path: &Path, cause: impl ToString) -> TlsError {
    TlsError::File {
        what,
        path: path.display().to_string(),
        cause: cause.to_string(),
    }
}

fn certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(what, path, e))?;
    if certs.is_empty() {
        return Err(file_error(what, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn root_store(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for c in certs(path, "root certificate")? {
        store
            .add(c)
            .map_err(|e| file_error("root certificate", path, e))?;
    }
    Ok(store)
}

/// The client key, refused when others may read it (libpq's rule).
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let meta = std::fs::metadata(path).map_err(|e| file_error("private key", path, e))?;
    let mode = meta.mode() & 0o777;
    let allowed = if meta.uid() == 0 { 0o640 } else { 0o600 };
    if mode & !allowed != 0 {
        return Err(TlsError::KeyMode {
            path: path.display().to_string(),
            mode,
        });
    }
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error("private key", path, e))
}

/// sslmode prefer / require without a root certificate: the certificate is not checked, the
/// handshake's signatures are.
#[derive(Debug)]
struct Unchecked(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// verify-ca (chain only) and verify-full (chain and name): webpki's verifier, with a name
/// mismatch forgiven for verify-ca.
#[derive(Debug)]
struct Verified {
    webpki: Arc<WebPkiServerVerifier>,
    names: bool,
}

impl ServerCertVerifier for Verified {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let r = self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        match r {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.names => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_with_a_root_checks_the_chain_like_libpq() {
        let s = |sslmode, root: Option<&'static Path>| TlsSettings {
            sslmode,
            sslrootcert: root,
            sslcert: None,
            sslkey: None,
        };
        let root = Some(Path::new("/ca.crt"));
        assert_eq!(s(SslMode::Require, None).check(), Check::None);
        assert_eq!(s(SslMode::Require, root).check(), Check::Ca);
        assert_eq!(s(SslMode::VerifyCa, root).check(), Check::Ca);
        assert_eq!(s(SslMode::VerifyFull, root).check(), Check::Full);
        assert_eq!(s(SslMode::Prefer, root).check(), Check::None);
        assert!(matches!(
            connector(&s(SslMode::VerifyFull, None)),
            Err(TlsError::NoRoot("verify-full"))
        ));
    }

    #[test]
    fn a_key_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.key");
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = private_key(&key).unwrap_err();
        assert!(
            matches!(err, TlsError::KeyMode { mode: 0o644, .. }),
            "{err}"
        );
    }
}
