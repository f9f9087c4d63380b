//! The image formats this crate reads: OCI and Docker schema-2 manifests and indexes, image
//! configs, and the media types of their layers. Only the fields Nimbus uses are modelled;
//! the rest are ignored, because registries and tools add their own freely.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ImageConfig;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The annotation naming a manifest in an OCI layout's index.json.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation with the full image name (a `docker save` of Docker ≥ 25 has it).
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Manifest media types accepted from registries.
pub const MANIFEST_TYPES: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// A content descriptor.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Where an index entry runs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// An image index / manifest list.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// A manifest document: an image or an index of images.
#[derive(Debug)]
pub enum Document {
    Image(Manifest),
    Index(Index),
}

/// Parse a manifest or index, told apart by `mediaType` or, without one, by its fields.
pub fn parse_document(bytes: &[u8]) -> Result<Document, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        schema_version: Option<u32>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if probe.schema_version != Some(2) {
        return Err(format!(
            "manifest schema version {:?} is not supported (only 2)",
            probe.schema_version
        ));
    }
    let is_index = match probe.media_type.as_deref() {
        Some(OCI_INDEX | DOCKER_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(other) => return Err(format!("manifest media type {other} is not supported")),
        None => probe.manifests.is_some(),
    };
    let parsed = if is_index {
        serde_json::from_slice(bytes).map(Document::Index)
    } else {
        serde_json::from_slice(bytes).map(Document::Image)
    };
    parsed.map_err(|e| e.to_string())
}

/// The architecture name images use for the machine we run on.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// The entry of an index that runs here (linux and the host architecture), or a message
/// listing what the index offers.
pub fn select_platform(index: &Index) -> Result<&Descriptor, String> {
    let fits = |d: &&Descriptor| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == host_arch())
    };
    if let Some(d) = index.manifests.iter().find(fits) {
        return Ok(d);
    }
    let offered: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .map(|p| format!("{}/{}", p.os, p.architecture))
        .collect();
    Err(format!(
        "no manifest for linux/{} (the index offers: {})",
        host_arch(),
        if offered.is_empty() {
            "none with a platform".into()
        } else {
            offered.join(", ")
        }
    ))
}

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Detected from the first bytes of a blob (more reliable than media types, which
    /// `docker save` archives do not even have).
    pub fn sniff(head: &[u8]) -> Self {
        match head {
            [0x1f, 0x8b, ..] => Self::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Self::Zstd,
            _ => Self::None,
        }
    }

    /// The OCI layer media type for this compression.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Self::None => OCI_LAYER_TAR,
            Self::Gzip => OCI_LAYER_GZIP,
            Self::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// An image config file (OCI or Docker): the platform, the process, the layer diff ids.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ConfigFile {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: Option<ContainerConfig>,
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

/// The `config` object of an image config.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

/// The `rootfs` object of an image config: digests of the uncompressed layers.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl ConfigFile {
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("image config: {e}"))
    }

    /// An error message unless the image runs on linux and the host architecture (an empty
    /// field is taken as "any").
    pub fn check_platform(&self) -> Result<(), String> {
        let os_ok = self.os.is_empty() || self.os == "linux";
        let arch_ok = self.architecture.is_empty() || self.architecture == host_arch();
        if os_ok && arch_ok {
            return Ok(());
        }
        Err(format!(
            "the image is for {}/{}, this machine runs linux/{}",
            self.os,
            self.architecture,
            host_arch()
        ))
    }

    /// The process settings, with empty strings taken as unset.
    pub fn image_config(&self) -> ImageConfig {
        let c = self.config.clone().unwrap_or_default();
        let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
        ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: non_empty(c.working_dir),
            user: non_empty(c.user),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(os: &str, arch: &str, digest: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest.into(),
            platform: Some(Platform {
                architecture: arch.into(),
                os: os.into(),
                variant: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn select_platform_picks_linux_host_arch() {
        let index = Index {
            manifests: vec![
                desc("linux", "s390x", "a"),
                desc("windows", host_arch(), "b"),
                desc("linux", host_arch(), "c"),
            ],
        };
        assert_eq!(select_platform(&index).unwrap().digest, "c");
    }

    #[test]
    fn select_platform_lists_what_is_offered() {
        let index = Index {
            manifests: vec![desc("linux", "s390x", "a")],
        };
        let err = select_platform(&index).unwrap_err();
        assert!(err.contains("linux/s390x"), "{err}");
    }

    #[test]
    fn documents_are_told_apart() {
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(parse_document(index), Ok(Document::Index(_))));
        let image = br#"{"schemaVersion":2,"config":{"digest":"sha256:x"},"layers":[]}"#;
        assert!(matches!(parse_document(image), Ok(Document::Image(_))));
        let v1 = br#"{"schemaVersion":1}"#;
        assert!(parse_document(v1).is_err());
        let odd = br#"{"schemaVersion":2,"mediaType":"text/plain"}"#;
        assert!(parse_document(odd).unwrap_err().contains("text/plain"));
    }

    #[test]
    fn config_fields_map_and_empty_strings_are_unset() {
        let c = ConfigFile::parse(
            br#"{"os":"linux","architecture":"amd64","config":{"Entrypoint":["/app"],
                "Cmd":null,"Env":["A=1"],"WorkingDir":"","User":"1000"}}"#,
        )
        .unwrap();
        let ic = c.image_config();
        assert_eq!(ic.entrypoint, vec!["/app"]);
        assert!(ic.cmd.is_empty());
        assert_eq!(ic.env, vec!["A=1"]);
        assert_eq!(ic.working_dir, None);
        assert_eq!(ic.user.as_deref(), Some("1000"));
    }

    #[test]
    fn foreign_platform_is_refused() {
        let c = ConfigFile {
            os: "windows".into(),
            architecture: "amd64".into(),
            ..Default::default()
        };
        assert!(c.check_platform().unwrap_err().contains("windows/amd64"));
        assert!(ConfigFile::default().check_platform().is_ok());
    }

    #[test]
    fn compression_is_sniffed() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"bin/"), Compression::None);
    }
}
