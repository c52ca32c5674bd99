//! Test certificates made with rcgen: a CA, server and client certificates, an expired
//! one, one for the wrong name, and a CA nobody uses.

use super::rsyslog::ServerTls;
use c42fwd::config::TlsOptions;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::PathBuf;
use tempfile::TempDir;

/// The client certificate's name (SAN and CN), what rsyslog's `permittedPeer` names.
pub const CLIENT_NAME: &str = "client.c42fwd.test";

/// Test certificates, written as PEM files into their own temp dir.
pub struct TestPki {
    _dir: TempDir,
    /// The CA that issued every certificate below.
    pub ca: PathBuf,
    /// A CA that issued nothing here: trusting only it, no server is trusted.
    pub other_ca: PathBuf,
    /// For `localhost` and `127.0.0.1`, valid now.
    pub server: ServerTls,
    /// For `localhost` and `127.0.0.1`, expired in 2021.
    pub expired: ServerTls,
    /// Valid, but for `wrong.c42fwd.test` only.
    pub wrong_name: ServerTls,
    /// A client certificate for [`CLIENT_NAME`] and its key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

fn leaf_params(names: &[&str], eku: ExtendedKeyUsagePurpose) -> CertificateParams {
    let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .expect("leaf params");
    p.distinguished_name.push(DnType::CommonName, names[0]);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![eku];
    p.not_before = date_time_ymd(2020, 1, 1);
    p.not_after = date_time_ymd(2090, 1, 1);
    p
}

impl TestPki {
    pub fn generate() -> TestPki {
        let dir = tempfile::Builder::new()
            .prefix("c42fwd-pki-")
            .tempdir()
            .expect("temp dir for certificates");
        let write = |name: &str, pem: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).expect("write pem");
            path
        };
        let ca_key = KeyPair::generate().expect("ca key");
        let ca = ca_params("c42fwd test ca");
        let ca_pem = ca.self_signed(&ca_key).expect("ca cert").pem();
        let issuer = Issuer::new(ca, ca_key);
        let other_key = KeyPair::generate().expect("other ca key");
        let other_pem = ca_params("c42fwd unrelated ca")
            .self_signed(&other_key)
            .expect("other ca cert")
            .pem();
        let ca = write("ca.pem", ca_pem);
        let other_ca = write("other-ca.pem", other_pem);

        let leaf = |stem: &str, params: CertificateParams| {
            let key = KeyPair::generate().expect("leaf key");
            let cert = params.signed_by(&key, &issuer).expect("sign leaf");
            (
                write(&format!("{stem}.pem"), cert.pem()),
                write(&format!("{stem}.key"), key.serialize_pem()),
            )
        };
        let server_names = ["localhost", "127.0.0.1"];
        let (cert, key) = leaf(
            "server",
            leaf_params(&server_names, ExtendedKeyUsagePurpose::ServerAuth),
        );
        let server = ServerTls {
            ca_file: ca.clone(),
            cert_file: cert,
            key_file: key,
        };
        let mut expired_params = leaf_params(&server_names, ExtendedKeyUsagePurpose::ServerAuth);
        expired_params.not_before = date_time_ymd(2020, 1, 1);
        expired_params.not_after = date_time_ymd(2021, 1, 1);
        let (cert, key) = leaf("expired", expired_params);
        let expired = ServerTls {
            ca_file: ca.clone(),
            cert_file: cert,
            key_file: key,
        };
        let (cert, key) = leaf(
            "wrong-name",
            leaf_params(&["wrong.c42fwd.test"], ExtendedKeyUsagePurpose::ServerAuth),
        );
        let wrong_name = ServerTls {
            ca_file: ca.clone(),
            cert_file: cert,
            key_file: key,
        };
        let (client_cert, client_key) = leaf(
            "client",
            leaf_params(&[CLIENT_NAME], ExtendedKeyUsagePurpose::ClientAuth),
        );
        TestPki {
            _dir: dir,
            ca,
            other_ca,
            server,
            expired,
            wrong_name,
            client_cert,
            client_key,
        }
    }

    /// Client settings that trust the test CA, with or without the client certificate.
    pub fn client(&self, with_certificate: bool) -> TlsOptions {
        TlsOptions {
            ca_file: Some(self.ca.clone()),
            client_cert: with_certificate.then(|| self.client_cert.clone()),
            client_key: with_certificate.then(|| self.client_key.clone()),
            ..TlsOptions::default()
        }
    }
}
