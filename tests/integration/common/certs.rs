//! Certificates for TLS tests, made with rcgen and written as PEM files into a test
//! directory: a CA, a server certificate for `127.0.0.1` and `localhost` signed by it,
//! client certificates by common name, an expired client certificate, and a second,
//! unrelated CA with a client certificate of its own.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};

use super::TestDir;

/// A date as (year, month, day).
type Ymd = (i32, u8, u8);

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pair {
    pub fn cert(&self) -> &str {
        self.cert.to_str().expect("utf-8 path")
    }
    pub fn key(&self) -> &str {
        self.key.to_str().expect("utf-8 path")
    }
}

/// A certificate authority that can sign client certificates into its directory.
pub struct Ca {
    /// The CA's certificate (what `--etcd-ca` and etcd's `--trusted-ca-file` take).
    pub cert: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    dir: PathBuf,
    /// Its name, which also starts the names of the files it signs.
    name: String,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        fs::create_dir_all(dir).expect("creating the certificate directory");
        let key = KeyPair::generate().expect("generating a key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).expect("self-signing the CA");
        let path = dir.join(format!("{name}.crt"));
        fs::write(&path, cert.pem()).expect("writing the CA certificate");
        Ca { cert: path, issuer: Issuer::new(params, key), dir: dir.to_path_buf(), name: name.to_string() }
    }

    pub fn ca(&self) -> &str {
        self.cert.to_str().expect("utf-8 path")
    }

    /// Sign a certificate for `cn` with these names (IP addresses become IP names), usable
    /// as `usage`, valid over `window` (default: from 1975 to 4096), into
    /// `<ca name>-<file>.crt` and `.key`.
    fn sign(
        &self,
        file: &str,
        cn: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        window: Option<(Ymd, Ymd)>,
    ) -> Pair {
        let key = KeyPair::generate().expect("generating a key");
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("certificate parameters");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![usage];
        if let Some(((y0, m0, d0), (y1, m1, d1))) = window {
            params.not_before = date_time_ymd(y0, m0, d0);
            params.not_after = date_time_ymd(y1, m1, d1);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("signing a certificate");
        let file = format!("{}-{file}", self.name);
        let pair =
            Pair { cert: self.dir.join(format!("{file}.crt")), key: self.dir.join(format!("{file}.key")) };
        fs::write(&pair.cert, cert.pem()).expect("writing a certificate");
        fs::write(&pair.key, key.serialize_pem()).expect("writing a key");
        pair
    }

    /// A client certificate with common name `cn` (etcd takes it as the user name when
    /// authentication is on and no token is sent).
    pub fn client(&self, cn: &str) -> Pair {
        self.sign(&format!("client-{cn}"), cn, &[], ExtendedKeyUsagePurpose::ClientAuth, None)
    }

    /// A client certificate with common name `cn` that expired in 2001.
    pub fn expired_client(&self, cn: &str) -> Pair {
        let window = Some(((2000, 1, 1), (2001, 1, 1)));
        self.sign(&format!("expired-{cn}"), cn, &[], ExtendedKeyUsagePurpose::ClientAuth, window)
    }
}

/// Everything a TLS test needs, under `<test dir>/certs`.
pub struct Certs {
    /// The CA etcd trusts and whose server certificate etcd presents.
    pub ca: Ca,
    /// etcd's server certificate, for `127.0.0.1` and `localhost`.
    pub server: Pair,
    /// A CA nobody trusts, with its own client certificates.
    pub other_ca: Ca,
}

impl Certs {
    pub fn new(t: &TestDir) -> Certs {
        let dir = t.path("certs");
        let ca = Ca::new(&dir, "ca");
        let server =
            ca.sign("server", "etcd", &["127.0.0.1", "localhost"], ExtendedKeyUsagePurpose::ServerAuth, None);
        let other_ca = Ca::new(&dir, "other-ca");
        Certs { ca, server, other_ca }
    }
}
