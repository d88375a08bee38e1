//! Certificates for a local control plane: one CA, a serving certificate for the API server,
//! client certificates for the admin, the controller manager and the scheduler, and the
//! service-account signing key. Generated afresh for every control plane.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A client identity: PEM certificate and key.
#[derive(Clone, Debug)]
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Files and PEMs of one control plane's PKI.
#[derive(Clone, Debug)]
pub struct Pki {
    pub ca_pem: String,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
    pub admin: ClientCert,
    pub controller_manager: ClientCert,
    pub scheduler: ClientCert,
}

fn write(path: PathBuf, contents: &str) -> Result<PathBuf, CertError> {
    std::fs::write(&path, contents).map_err(|source| CertError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

fn client(
    issuer: &Issuer<'_, KeyPair>,
    cn: &str,
    org: Option<&str>,
) -> Result<ClientCert, CertError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    if let Some(o) = org {
        dn.push(DnType::OrganizationName, o);
    }
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = params.signed_by(&key, issuer)?;
    Ok(ClientCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A self-signed CA named `common_name`: its certificate (PEM), its key (PEM), and the
/// issuer that signs with it.
pub fn new_ca(
    common_name: &str,
) -> Result<(String, String, Issuer<'static, KeyPair>), rcgen::Error> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let (cert_pem, key_pem) = (ca_cert.pem(), ca_key.serialize_pem());
    Ok((cert_pem, key_pem, Issuer::new(ca_params, ca_key)))
}

/// Generates the PKI into `dir`. `service_ip` is the first address of the service range
/// (the `kubernetes` Service), named in the serving certificate as the real one is.
pub fn generate(dir: &Path, service_ip: Ipv4Addr) -> Result<Pki, CertError> {
    let (ca_pem, ca_key_pem, issuer) = new_ca("sluice-e2e-ca")?;

    let serving_key = KeyPair::generate()?;
    let mut serving = CertificateParams::new(vec![
        "localhost".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        "kubernetes.default.svc.cluster.local".to_string(),
    ])?;
    serving
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    serving
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(service_ip)));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kube-apiserver");
    serving.distinguished_name = dn;
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    serving.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let serving_cert = serving.signed_by(&serving_key, &issuer)?;

    let sa = KeyPair::generate()?;

    Ok(Pki {
        ca_cert: write(dir.join("ca.crt"), &ca_pem)?,
        ca_key: write(dir.join("ca.key"), &ca_key_pem)?,
        serving_cert: write(dir.join("apiserver.crt"), &serving_cert.pem())?,
        serving_key: write(dir.join("apiserver.key"), &serving_key.serialize_pem())?,
        sa_key: write(dir.join("sa.key"), &sa.serialize_pem())?,
        sa_pub: write(dir.join("sa.pub"), &sa.public_key_pem())?,
        admin: client(&issuer, "sluice-e2e-admin", Some("system:masters"))?,
        controller_manager: client(&issuer, "system:kube-controller-manager", None)?,
        scheduler: client(&issuer, "system:kube-scheduler", None)?,
        ca_pem,
    })
}
