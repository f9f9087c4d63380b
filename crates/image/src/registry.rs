//! Pulling from a registry (Docker Registry HTTP API v2 / OCI distribution) with
//! `oci-client`: authenticate (basic, or the bearer-token dance), fetch the manifest, pick
//! the linux/<host arch> entry of an index, then the config and the layers, each streamed
//! into [`Staging`] and checked against its digest. Blobs already stored are not fetched
//! again. Loopback registries and those listed as insecure are spoken to over plain HTTP.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use crate::blobs::{BlobWriter, Staging};
use crate::digest::Digest;
use crate::spec::{self, ConfigFile, Descriptor, Document, Manifest};
use crate::store::{StagedImage, StoreOptions};
use crate::{ImageError, Progress, auth, reference};

/// Pull `image` into `staging` (nothing is committed here).
pub(crate) async fn pull(
    image: &Reference,
    options: &StoreOptions,
    staging: &mut Staging,
    progress: &dyn Progress,
) -> Result<StagedImage, ImageError> {
    let session = Session::new(image, options)?;
    progress.message(&format!("pulling {image} from {}", session.registry));
    session.authenticate().await?;
    let (digest, manifest) = session.manifest(staging).await?;
    let config_digest = session
        .fetch(&manifest.config, staging, progress, "image config")
        .await?;
    let config = ConfigFile::parse(&staging.read(&config_digest)?)
        .map_err(|e| ImageError::unsupported(image.whole(), e))?;
    config
        .check_platform()
        .map_err(|e| ImageError::unsupported(image.whole(), e))?;
    for layer in &manifest.layers {
        check_layer_type(image, layer)?;
    }
    for layer in &manifest.layers {
        session
            .fetch(layer, staging, progress, &format!("layer {}", layer.digest))
            .await?;
    }
    let references = match reference::pinned(image) {
        Some(_) => Vec::new(),
        None => vec![reference::key(image)],
    };
    Ok(StagedImage {
        digest,
        manifest,
        config,
        references,
    })
}

/// Layer media types we can unpack (tar, gzip; Docker's and OCI's names).
fn check_layer_type(image: &Reference, layer: &Descriptor) -> Result<(), ImageError> {
    let t = layer.media_type.as_str();
    let ok =
        t.is_empty() || t.ends_with(".tar") || t.ends_with("tar+gzip") || t.ends_with(".tar.gzip");
    if ok {
        return Ok(());
    }
    Err(ImageError::unsupported(
        image.whole(),
        format!(
            "layer {} has media type {t}, which Nimbus cannot unpack (tar and tar+gzip only)",
            layer.digest
        ),
    ))
}

/// One pull's client, credentials and names for messages.
struct Session<'a> {
    client: Client,
    auth: RegistryAuth,
    image: &'a Reference,
    registry: String,
}

impl<'a> Session<'a> {
    fn new(image: &'a Reference, options: &StoreOptions) -> Result<Self, ImageError> {
        // reqwest's rustls needs a process-wide crypto provider; an error only means one is
        // installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let registry = image.registry().to_string();
        let mut plain_http: Vec<String> = options.insecure_registries.clone();
        if reference::is_loopback(&registry) {
            plain_http.push(image.resolve_registry().to_string());
        }
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(plain_http),
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(60)),
            platform_resolver: None,
            ..Default::default()
        };
        let auth = match &options.auth_file {
            Some(path) => match auth::credentials(path, &registry)? {
                Some((user, pass)) => RegistryAuth::Basic(user, pass),
                None => RegistryAuth::Anonymous,
            },
            None => RegistryAuth::Anonymous,
        };
        Ok(Self {
            client: Client::new(config),
            auth,
            image,
            registry,
        })
    }

    /// Get a token (or settle on basic auth); also the first contact, so an unreachable
    /// registry is reported here.
    async fn authenticate(&self) -> Result<(), ImageError> {
        self.client
            .auth(self.image, &self.auth, RegistryOperation::Pull)
            .await
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// Fetch and stage the image's manifest (through its index, if it has one); returns the
    /// platform manifest's digest and contents.
    async fn manifest(&self, staging: &mut Staging) -> Result<(Digest, Manifest), ImageError> {
        let (digest, bytes) = self.document(self.image, staging, "manifest").await?;
        let parsed = spec::parse_document(&bytes)
            .map_err(|e| ImageError::unsupported(self.image.whole(), e))?;
        let index = match parsed {
            Document::Image(m) => return Ok((digest, m)),
            Document::Index(index) => index,
        };
        let entry = spec::select_platform(&index)
            .map_err(|e| ImageError::unsupported(self.image.whole(), e))?;
        let platform_ref = self.image.clone_with_digest(entry.digest.clone());
        let (digest, bytes) = self
            .document(&platform_ref, staging, "platform manifest")
            .await?;
        match spec::parse_document(&bytes) {
            Ok(Document::Image(m)) => Ok((digest, m)),
            Ok(Document::Index(_)) => Err(ImageError::unsupported(
                self.image.whole(),
                "an index inside an index",
            )),
            Err(e) => Err(ImageError::unsupported(self.image.whole(), e)),
        }
    }

    /// Fetch one manifest or index, verify its digest (against the reference's, if pinned)
    /// and stage it.
    async fn document(
        &self,
        image: &Reference,
        staging: &mut Staging,
        what: &str,
    ) -> Result<(Digest, Vec<u8>), ImageError> {
        let (bytes, _) = self
            .client
            .pull_manifest_raw(image, &self.auth, spec::MANIFEST_TYPES)
            .await
            .map_err(|e| self.error(e))?;
        let actual = Digest::of(&bytes);
        let expected = reference::pinned(image).unwrap_or_else(|| actual.clone());
        staging.add_bytes(&expected, &bytes, &format!("{what} of {image}"))?;
        Ok((expected, bytes.to_vec()))
    }

    /// Stream blob `desc` into staging unless it is there already.
    async fn fetch(
        &self,
        desc: &Descriptor,
        staging: &mut Staging,
        progress: &dyn Progress,
        what: &str,
    ) -> Result<Digest, ImageError> {
        let digest = Digest::parse(&desc.digest)
            .map_err(|e| ImageError::unsupported(self.image.whole(), e))?;
        if staging.has(&digest) {
            progress.layer(&desc.digest, desc.size, Some(desc.size));
            return Ok(digest);
        }
        let mut writer = staging.writer()?;
        let sink = Sink {
            writer: &mut writer,
            progress,
            digest: &desc.digest,
            total: (desc.size > 0).then_some(desc.size),
        };
        self.client
            .pull_blob(self.image, desc.digest.as_str(), sink)
            .await
            .map_err(|e| self.error(e))?;
        staging.finish(writer, &digest, what)?;
        Ok(digest)
    }

    /// An oci-client error in the user's terms.
    fn error(&self, e: OciDistributionError) -> ImageError {
        match classify(e, &self.image.whole(), &self.registry) {
            ImageError::Unauthorized {
                reference,
                registry,
                detail,
            } => {
                let who = match &self.auth {
                    RegistryAuth::Basic(user, _) => {
                        format!("the credentials of {user} were rejected")
                    }
                    _ => format!("no credentials are stored for {registry}"),
                };
                ImageError::Unauthorized {
                    reference,
                    registry,
                    detail: format!("{detail} ({who})"),
                }
            }
            other => other,
        }
    }
}

/// Map an oci-client error to what it means for the user.
fn classify(e: OciDistributionError, image: &str, registry: &str) -> ImageError {
    use OciDistributionError as E;
    let unauthorized = |detail: String| ImageError::Unauthorized {
        reference: image.into(),
        registry: registry.into(),
        detail,
    };
    let not_found = |detail: String| ImageError::NotFound {
        reference: image.into(),
        registry: registry.into(),
        detail,
    };
    let unavailable = |detail: String| ImageError::Unavailable {
        registry: registry.into(),
        detail,
    };
    match e {
        E::AuthenticationFailure(d) => unauthorized(format!("authentication failed: {d}")),
        E::UnauthorizedError { url } => unauthorized(format!("401 Unauthorized for {url}")),
        E::RegistryError { envelope, url } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            let detail = format!("{envelope} ({url})");
            if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                unauthorized(detail)
            } else if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NotFound
                )
            }) {
                not_found(detail)
            } else {
                unavailable(detail)
            }
        }
        E::ServerError { code, url, message } => match code {
            401 | 403 => unauthorized(format!("HTTP {code} for {url}")),
            404 => not_found(format!("HTTP 404 for {url}")),
            _ => unavailable(format!("HTTP {code} for {url}: {}", message.trim())),
        },
        E::ImageManifestNotFoundError(d) => not_found(d),
        E::RequestError(e) => unavailable(chain(&e)),
        E::DigestError(oci_client::errors::DigestError::VerificationError { expected, actual }) => {
            ImageError::DigestMismatch {
                what: format!("a blob of {image}"),
                expected,
                actual,
            }
        }
        E::IoError(e) => ImageError::io(format!("pulling {image}"))(e),
        e @ (E::UnsupportedMediaTypeError(_)
        | E::UnsupportedSchemaVersionError(_)
        | E::IncompatibleLayerMediaTypeError(_)
        | E::ManifestParsingError(_)
        | E::VersionedParsingError(_)) => ImageError::unsupported(image, e.to_string()),
        other => unavailable(format!("protocol error: {other}")),
    }
}

/// An error with its causes, for messages ("error sending request: connection refused").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// An `AsyncWrite` into a staging blob that reports progress.
struct Sink<'w> {
    writer: &'w mut BlobWriter,
    progress: &'w dyn Progress,
    digest: &'w str,
    total: Option<u64>,
}

impl tokio::io::AsyncWrite for Sink<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        use std::io::Write as _;
        let this = self.get_mut();
        this.writer.write_all(buf)?;
        this.progress
            .layer(this.digest, this.writer.len(), this.total);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(e: OciDistributionError) -> ImageError {
        classify(e, "r:1/a:1", "r:1")
    }

    #[test]
    fn registry_errors_get_their_reasons() {
        assert_eq!(
            err(E::UnauthorizedError { url: "u".into() }).reason(),
            "RegistryUnauthorized"
        );
        assert_eq!(
            err(E::AuthenticationFailure("x".into())).reason(),
            "RegistryUnauthorized"
        );
        let envelope: oci_client::errors::OciEnvelope = serde_json::from_str(
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        )
        .unwrap();
        let e = err(E::RegistryError {
            envelope,
            url: "u".into(),
        });
        assert_eq!(e.reason(), "ImageNotFound");
        assert!(
            e.to_string().contains("r:1/a:1") && e.to_string().contains("registry r:1"),
            "{e}"
        );
        let e = err(E::ServerError {
            code: 503,
            url: "u".into(),
            message: "down".into(),
        });
        assert_eq!(e.reason(), "RegistryUnavailable");
        assert!(e.is_transient());
        let e = err(E::DigestError(
            oci_client::errors::DigestError::VerificationError {
                expected: "a".into(),
                actual: "b".into(),
            },
        ));
        assert_eq!(e.reason(), "DigestMismatch");
    }

    use OciDistributionError as E;

    #[test]
    fn layer_types() {
        let image: Reference = "r:1/a:1".parse().unwrap();
        let d = |t: &str| Descriptor {
            media_type: t.into(),
            ..Default::default()
        };
        for ok in [
            spec::OCI_LAYER_TAR,
            spec::OCI_LAYER_GZIP,
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        ] {
            assert!(check_layer_type(&image, &d(ok)).is_ok(), "{ok}");
        }
        let e = check_layer_type(&image, &d("application/vnd.oci.image.layer.v1.tar+zstd"))
            .unwrap_err();
        assert_eq!(e.reason(), "UnsupportedImage");
    }
}
