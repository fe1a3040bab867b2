//! The GitLab version a request comes from (`X-Gitlab-Version`, sent by Rails on every call),
//! for answers whose shape only newer GitLab understands (docs/fidelity.md, "The version
//! switch").

/// `major.minor` of the calling GitLab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GitlabVersion {
    pub major: u32,
    pub minor: u32,
}

impl GitlabVersion {
    /// What a missing or unreadable header counts as: 18.x. An 18.x Rails would show a
    /// 19.x-only event as garbage; a 19.x Rails still reads the 18.x shapes.
    pub const ASSUMED: GitlabVersion = GitlabVersion { major: 18, minor: 0 };

    /// Reads `18.4.1`, `19.0.0-pre`, `18.4.1-ee`, ` 19.1 `; anything else is [`Self::ASSUMED`].
    pub fn from_header(value: Option<&str>) -> GitlabVersion {
        value.and_then(Self::parse).unwrap_or(Self::ASSUMED)
    }

    fn parse(value: &str) -> Option<GitlabVersion> {
        let mut parts = value.trim().split(['.', '-', '+']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().map_or(Some(0), |m| m.parse().ok())?;
        Some(GitlabVersion { major, minor })
    }

    pub fn at_least(self, major: u32, minor: u32) -> bool {
        self >= GitlabVersion { major, minor }
    }

    /// GitLab 19.0 and later: chat `finish_reason`/`usage` events, `/v4` code generation.
    pub fn is_19_or_later(self) -> bool {
        self.at_least(19, 0)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn reads_rails_versions_and_assumes_18_otherwise() {
        let v = |s: Option<&str>| GitlabVersion::from_header(s);
        assert_eq!(v(Some("18.4.1")), GitlabVersion { major: 18, minor: 4 });
        assert_eq!(v(Some("19.0.0-pre")), GitlabVersion { major: 19, minor: 0 });
        assert_eq!(v(Some(" 19.1 ")), GitlabVersion { major: 19, minor: 1 });
        assert_eq!(v(Some("20")), GitlabVersion { major: 20, minor: 0 });
        for bad in [None, Some(""), Some("abc"), Some("19.x"), Some("-1.2")] {
            assert_eq!(v(bad), GitlabVersion::ASSUMED, "{bad:?}");
        }
        assert!(v(Some("19.0.0")).is_19_or_later());
        assert!(!v(Some("18.11.3")).is_19_or_later());
        assert!(v(Some("18.5.0")).at_least(18, 5) && !v(Some("18.4.9")).at_least(18, 5));
    }
}
