//! Fetching a source's keys (OIDC discovery -> `jwks_uri`, or the JWKS directly) as a small state
//! machine, and when to fetch. Pure: the adapter dispatches the calls and feeds the answers back.

use crate::config::{JwksSource, KeyLocation};
use crate::keys::{StoredKey, parse_discovery, parse_jwks};
use serde::{Deserialize, Serialize};

/// At most one refetch per source this often because of an unknown `kid`.
pub(crate) const KID_REFETCH_INTERVAL_S: u64 = 5;
/// Retry period while a source has never answered: the gateway is not ready until it has.
pub(crate) const RETRY_WITHOUT_KEYS_S: u64 = 1;
/// Retry period after a failed refresh while the last good keys are still in use.
pub(crate) const RETRY_WITH_KEYS_S: u64 = 30;
/// Largest discovery document or JWKS read.
pub(crate) const MAX_BODY_BYTES: usize = 256 * 1024;

/// One HTTP call to make through an Envoy cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FetchRequest {
    pub(crate) cluster: String,
    pub(crate) authority: String,
    pub(crate) path: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FetchStep {
    Next(FetchRequest),
    Done(Vec<StoredKey>),
    Failed(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Discovery,
    Jwks,
}

/// An in-flight fetch of one source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fetch {
    pub(crate) source: String,
    stage: Stage,
}

impl Fetch {
    pub(crate) fn start(src: &JwksSource) -> (Fetch, FetchRequest) {
        let (stage, path) = match &src.location {
            KeyLocation::Discovery(p) => (Stage::Discovery, p.clone()),
            KeyLocation::Jwks(p) => (Stage::Jwks, p.clone()),
        };
        let req = FetchRequest { cluster: src.cluster.clone(), authority: src.authority.clone(), path };
        (Fetch { source: src.name.clone(), stage }, req)
    }

    /// Feeds one answer (`status` is `None` when the call failed: reset, timeout...).
    pub(crate) fn on_response(&mut self, src: &JwksSource, status: Option<u32>, body: &[u8]) -> FetchStep {
        let what = match self.stage {
            Stage::Discovery => "OIDC discovery",
            Stage::Jwks => "JWKS",
        };
        match status {
            Some(200) => {}
            Some(s) => return FetchStep::Failed(format!("{what} answered HTTP {s}")),
            None => return FetchStep::Failed(format!("{what} call failed (no answer)")),
        }
        if body.len() > MAX_BODY_BYTES {
            return FetchStep::Failed(format!("{what} larger than {MAX_BODY_BYTES} bytes"));
        }
        match self.stage {
            Stage::Discovery => match parse_discovery(body) {
                Ok(path) => {
                    self.stage = Stage::Jwks;
                    FetchStep::Next(FetchRequest { cluster: src.cluster.clone(), authority: src.authority.clone(), path })
                }
                Err(e) => FetchStep::Failed(e),
            },
            Stage::Jwks => match parse_jwks(body) {
                Ok(keys) => FetchStep::Done(keys),
                Err(e) => FetchStep::Failed(e),
            },
        }
    }
}

/// The last attempt to fetch a source, shared by all workers (one claims it with CAS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Attempt {
    /// Unix seconds of the last scheduled (start or refresh) attempt.
    #[serde(default)]
    pub(crate) scheduled_at: Option<u64>,
    /// Unix seconds of the last refetch caused by an unknown `kid`.
    #[serde(default)]
    pub(crate) kid_miss_at: Option<u64>,
    /// That refetch has not ended yet (set by the claim, cleared by the worker that made it when
    /// its answer came, whatever it was). Requests with unknown kids on any worker wait for it.
    #[serde(default)]
    pub(crate) kid_miss_pending: bool,
}

impl Attempt {
    pub(crate) fn decode(bytes: Option<&[u8]>) -> Attempt {
        bytes.and_then(|b| serde_json::from_slice(b).ok()).unwrap_or_default()
    }
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Whether a scheduled fetch of a source is due: at start, every `refresh_interval_s` after the
/// last success, and retries (fast while no key was ever loaded).
pub(crate) fn refresh_due(now: u64, fetched_at: Option<u64>, attempt: &Attempt, refresh_interval_s: u64) -> bool {
    let since_attempt = |period: u64| attempt.scheduled_at.is_none_or(|t| now >= t.saturating_add(period) || now < t);
    match fetched_at {
        None => since_attempt(RETRY_WITHOUT_KEYS_S),
        Some(t) => now >= t.saturating_add(refresh_interval_s) && since_attempt(RETRY_WITH_KEYS_S),
    }
}

/// Whether an unknown `kid` may trigger a refetch of this source now.
pub(crate) fn kid_refetch_allowed(now: u64, attempt: &Attempt) -> bool {
    attempt.kid_miss_at.is_none_or(|t| now >= t.saturating_add(KID_REFETCH_INTERVAL_S) || now < t)
}

/// How long a kid-miss refetch can take: discovery and JWKS calls, each bounded by the fetch
/// timeout, plus a second for the whole-second clock.
pub(crate) fn refetch_window_s(fetch_timeout_ms: u64) -> u64 {
    2 * fetch_timeout_ms.div_ceil(1000) + 1
}

/// The kid-miss refetches under way across sources (pending and within their window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UnderWay {
    /// When the oldest and the newest of them started (unix seconds).
    pub(crate) oldest: u64,
    pub(crate) newest: u64,
    /// When the last of them stops being waited for: a worker that died mid-fetch cannot hold
    /// waiters longer than the window.
    pub(crate) until: u64,
}

impl UnderWay {
    /// Reads the sources' attempts; `None` when no refetch is under way.
    pub(crate) fn of(now: u64, attempts: impl IntoIterator<Item = Attempt>, window_s: u64) -> Option<UnderWay> {
        attempts
            .into_iter()
            .filter_map(|a| {
                let started = a.kid_miss_at.filter(|_| a.kid_miss_pending)?;
                let until = started.saturating_add(window_s);
                (now < until).then_some(UnderWay { oldest: started, newest: started, until })
            })
            .reduce(|a, b| UnderWay { oldest: a.oldest.min(b.oldest), newest: a.newest.max(b.newest), until: a.until.max(b.until) })
    }
}

/// Whether a request that joined the refetches under way at `joined` (their [`UnderWay`] then)
/// should decide now: every refetch it joined has ended (none left, or only ones started later,
/// which it did not join: a kid refetch of one source starts at most every 5 s), or their window
/// has passed.
pub(crate) fn waiter_due(now: u64, joined: &UnderWay, current: Option<&UnderWay>) -> bool {
    now >= joined.until || current.is_none_or(|c| c.oldest > joined.newest)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::testkeys;

    fn source(location: KeyLocation) -> JwksSource {
        JwksSource { name: "gitlab".into(), cluster: "gitlab_cluster".into(), authority: "gitlab.example.com".into(), location }
    }

    fn jwks() -> Vec<u8> {
        serde_json::json!({"keys": [testkeys::jwk(testkeys::GITLAB_A_PEM, "a")]}).to_string().into_bytes()
    }

    #[test]
    fn discovery_then_jwks_on_the_same_cluster() {
        let src = source(KeyLocation::Discovery("/.well-known/openid-configuration".into()));
        let (mut f, req) = Fetch::start(&src);
        assert_eq!(req, FetchRequest { cluster: "gitlab_cluster".into(), authority: "gitlab.example.com".into(), path: "/.well-known/openid-configuration".into() });
        let doc = br#"{"issuer": "https://gitlab.example.com", "jwks_uri": "https://gitlab.example.com/oauth/discovery/keys"}"#;
        assert_eq!(
            f.on_response(&src, Some(200), doc),
            FetchStep::Next(FetchRequest { cluster: "gitlab_cluster".into(), authority: "gitlab.example.com".into(), path: "/oauth/discovery/keys".into() })
        );
        match f.on_response(&src, Some(200), &jwks()) {
            FetchStep::Done(keys) => assert_eq!(keys[0].kid.as_deref(), Some("a")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn direct_jwks_and_failures() {
        let src = source(KeyLocation::Jwks("/oauth/discovery/keys".into()));
        let (mut f, req) = Fetch::start(&src);
        assert_eq!(req.path, "/oauth/discovery/keys");
        assert!(matches!(f.clone().on_response(&src, Some(200), &jwks()), FetchStep::Done(_)));
        assert_eq!(f.clone().on_response(&src, Some(503), b""), FetchStep::Failed("JWKS answered HTTP 503".into()));
        assert!(matches!(f.clone().on_response(&src, None, b""), FetchStep::Failed(_)));
        assert!(matches!(f.on_response(&src, Some(200), b"{}"), FetchStep::Failed(_)));
        let (mut d, _) = Fetch::start(&source(KeyLocation::Discovery("/d".into())));
        assert!(matches!(d.on_response(&src, Some(200), b"<html>"), FetchStep::Failed(_)));
    }

    #[test]
    fn refresh_schedule() {
        let none = Attempt::default();
        assert!(refresh_due(1000, None, &none, 3600), "at start");
        let tried = Attempt { scheduled_at: Some(1000), ..Attempt::default() };
        assert!(!refresh_due(1000, None, &tried, 3600));
        assert!(refresh_due(1001, None, &tried, 3600), "fast retry while no keys");
        assert!(!refresh_due(1000 + 3599, Some(1000), &tried, 3600));
        assert!(refresh_due(1000 + 3600, Some(1000), &tried, 3600), "every refresh_interval_s");
        let failed_refresh = Attempt { scheduled_at: Some(4600), ..Attempt::default() };
        assert!(!refresh_due(4620, Some(1000), &failed_refresh, 3600));
        assert!(refresh_due(4630, Some(1000), &failed_refresh, 3600), "slower retry with keys");
    }

    #[test]
    fn kid_refetch_is_rate_limited() {
        assert!(kid_refetch_allowed(100, &Attempt::default()));
        let a = Attempt { kid_miss_at: Some(100), ..Attempt::default() };
        assert!(!kid_refetch_allowed(104, &a));
        assert!(kid_refetch_allowed(105, &a));
        assert_eq!(Attempt::decode(Some(&a.encode())), a);
        assert_eq!(Attempt::decode(Some(b"junk")), Attempt::default());
        // Written by a version without the pending flag: nothing is under way.
        assert_eq!(Attempt::decode(Some(br#"{"kid_miss_at":100}"#)), a);
    }

    #[test]
    fn a_refetch_is_waited_for_while_pending_and_within_its_window() {
        let window = refetch_window_s(5000);
        assert_eq!(window, 11);
        assert_eq!(refetch_window_s(1), 3);
        let pending = Attempt { kid_miss_at: Some(100), kid_miss_pending: true, ..Attempt::default() };
        let at = |now| UnderWay::of(now, [pending], window);
        assert_eq!(at(100), Some(UnderWay { oldest: 100, newest: 100, until: 111 }));
        assert_eq!(at(110).map(|u| u.until), Some(111));
        assert_eq!(at(111), None, "a fetcher that died holds no one past the window");
        let ended = Attempt { kid_miss_pending: false, ..pending };
        assert_eq!(UnderWay::of(101, [ended], window), None);
        assert_eq!(UnderWay::of(101, [Attempt::default()], window), None);
        assert_eq!(Attempt::decode(Some(&pending.encode())), pending);
        let other = Attempt { kid_miss_at: Some(103), kid_miss_pending: true, ..Attempt::default() };
        assert_eq!(UnderWay::of(104, [pending, ended, other], window), Some(UnderWay { oldest: 100, newest: 103, until: 114 }));
    }

    #[test]
    fn a_waiter_decides_when_what_it_joined_has_ended() {
        let joined = UnderWay { oldest: 100, newest: 100, until: 111 };
        assert!(!waiter_due(100, &joined, Some(&joined)), "still under way");
        assert!(waiter_due(100, &joined, None), "ended (keys stored or the fetch failed)");
        // The joined refetch ended and the next one (a junk kid 5 s later) started before this
        // worker's tick looked: that one is not waited for.
        assert!(waiter_due(105, &joined, Some(&UnderWay { oldest: 105, newest: 105, until: 116 })));
        // Another source's refetch started later while the joined one is still under way: wait.
        assert!(!waiter_due(101, &joined, Some(&UnderWay { oldest: 100, newest: 101, until: 112 })));
        assert!(waiter_due(111, &joined, Some(&joined)), "window passed");
    }
}
