//! Build identity reported by `GET /version` and `rtcd --version`.
//!
//! `buildVersion` drives the Calls plugin's gates (spec control-plane §4.3): it must be a semver
//! ≥ v1.2.6 so that the plugin accepts the host, trusts the sessions API and enables
//! data-channel signaling locks. We report the upstream compatibility level we implement, with
//! our own crate version as semver build metadata (ignored by semver comparisons).

use serde::Serialize;

/// Upstream rtcd release whose wire protocol this build implements.
pub const COMPATIBLE_UPSTREAM_VERSION: &str = "1.2.6";

/// The six string keys of `/version`, in upstream's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct VersionInfo {
    #[serde(rename = "buildDate")]
    pub build_date: String,
    #[serde(rename = "buildVersion")]
    pub build_version: String,
    #[serde(rename = "buildHash")]
    pub build_hash: String,
    #[serde(rename = "goVersion")]
    pub go_version: String,
    #[serde(rename = "goOS")]
    pub go_os: String,
    #[serde(rename = "goArch")]
    pub go_arch: String,
}

impl VersionInfo {
    /// This binary's identity.
    pub fn current() -> Self {
        Self {
            build_date: env!("RTCD_BUILD_DATE").to_owned(),
            build_version: build_version(),
            build_hash: env!("RTCD_BUILD_HASH").to_owned(),
            go_version: format!("rust-{}", env!("RTCD_RUSTC_VERSION")),
            go_os: std::env::consts::OS.to_owned(),
            go_arch: go_arch(std::env::consts::ARCH).to_owned(),
        }
    }
}

/// `v1.2.6+rtcd-rs.<crate version>`.
pub fn build_version() -> String {
    format!(
        "v{COMPATIBLE_UPSTREAM_VERSION}+rtcd-rs.{}",
        env!("CARGO_PKG_VERSION")
    )
}

/// Go's architecture names.
fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_keys_and_order() {
        let json = serde_json::to_string(&VersionInfo::current()).unwrap();
        let keys: Vec<_> = [
            "buildDate",
            "buildVersion",
            "buildHash",
            "goVersion",
            "goOS",
            "goArch",
        ]
        .iter()
        .map(|k| json.find(&format!("\"{k}\":\"")).expect(k))
        .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{json}");
        assert!(build_version().starts_with("v1.2.6+"));
    }
}
