//! str0m's crypto (aws-lc), with one change: the DTLS configuration is built once per
//! process (per MTU) and shared by every connection. str0m's provider builds one per
//! connection, and building one validates the crypto provider by running a key exchange
//! in every group it supports, P-384 included: about a millisecond of CPU per connection,
//! most of the relay's DTLS cost when many calls start at once.
//!
//! [`install`] makes it the process default; the server's relay and the Rust SDK call it
//! before their first connection. [`certificate`] is the one DTLS certificate they use.

use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::Instant;

use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
};
use str0m::crypto::{CryptoError, CryptoProvider};

/// Installs str0m's aws-lc crypto with the shared DTLS configuration as the process
/// default (once; later calls do nothing).
pub fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let defaults = str0m::crypto::from_feature_flags();
        let provider = PROVIDER
            .get_or_init(|| SharedConfig { inner: defaults.dtls_provider, configs: Mutex::default() });
        CryptoProvider { dtls_provider: provider, ..defaults }.install_process_default();
    });
}

/// This process's DTLS certificate, made once and shared by every connection (as browsers
/// keep one per origin): making one costs milliseconds, which every new connection would
/// otherwise spend. Its fingerprint is in each offer and answer, so peers still
/// authenticate each connection's DTLS. `None` if it could not be made (each connection
/// then makes its own).
pub fn certificate() -> Option<DtlsCert> {
    static CERT: OnceLock<Option<DtlsCert>> = OnceLock::new();
    CERT.get_or_init(|| str0m::crypto::from_feature_flags().dtls_provider.generate_certificate()).clone()
}

static PROVIDER: OnceLock<SharedConfig> = OnceLock::new();

/// A DTLS provider whose dimpl configurations are made once per MTU.
#[derive(Debug)]
struct SharedConfig {
    /// str0m's own provider, for certificates.
    inner: &'static dyn DtlsProvider,
    configs: Mutex<Vec<(Option<usize>, Arc<dimpl::Config>)>>,
}

impl SharedConfig {
    fn config(&self, mtu: Option<usize>) -> Result<Arc<dimpl::Config>, CryptoError> {
        let mut configs =
            self.configs.lock().map_err(|_| CryptoError::Other("DTLS config lock poisoned".into()))?;
        if let Some((_, c)) = configs.iter().find(|(m, _)| *m == mtu) {
            return Ok(c.clone());
        }
        // As str0m's provider sets it up: ICE has checked return routability before
        // DTLS starts, so server cookies add nothing.
        let mut builder = dimpl::Config::builder().use_server_cookie(false);
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        let config = Arc::new(
            builder.build().map_err(|e| CryptoError::Other(format!("dimpl config creation failed: {e}")))?,
        );
        configs.push((mtu, config.clone()));
        Ok(config)
    }
}

impl DtlsProvider for SharedConfig {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        self.inner.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let config = self.config(mtu)?;
        let cert = cert.clone();
        let dtls = match dtls_version {
            DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, cert, now),
            DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, cert, now),
            DtlsVersion::Auto => dimpl::Dtls::new_auto(config, cert, now),
            other => return Err(CryptoError::Other(format!("unsupported DTLS version: {other}"))),
        };
        Ok(Box::new(Instance(dtls)))
    }
}

/// One connection's DTLS.
struct Instance(dimpl::Dtls);

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Instance")
    }
}

impl DtlsInstance for Instance {
    fn set_active(&mut self, active: bool) {
        self.0.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.0.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        self.0.poll_output(buf)
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.0.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.0.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.0.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.0.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.0.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.0.close()
    }
}
