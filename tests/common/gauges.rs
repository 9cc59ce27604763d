//! The one bounded wait for counts to settle at zero. Teardown (a session's cleanup, another
//! member's subscription ending in its own task) finishes after the call that started it, and
//! no client can observe it, so this polls, with a bound. Shared by every test file: the
//! signaling tests through `common`, the media tests through `media_support`.

use std::time::Duration;

use sfu_lite::metrics::Metrics;

/// Upper bound of the wait.
const SETTLE: Duration = Duration::from_secs(10);
/// Poll interval: short next to SETTLE, long enough not to spin.
const POLL: Duration = Duration::from_millis(20);

/// Waits until every count `snapshot` returns is zero; panics with the ones that are not after
/// the bound.
pub async fn assert_settles_to_zero(snapshot: impl Fn() -> Vec<(String, i64)>) {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let live: Vec<_> = snapshot().into_iter().filter(|(_, v)| *v != 0).collect();
        if live.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not back to zero after {SETTLE:?}: {live:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Every gauge of `metrics` by name.
pub fn gauges(metrics: &Metrics) -> Vec<(String, i64)> {
    metrics
        .gauges()
        .into_iter()
        .map(|(name, v)| (name.to_string(), v))
        .collect()
}

/// Waits until every gauge of `metrics` is back to zero.
pub async fn assert_gauges_zero(metrics: &Metrics) {
    assert_settles_to_zero(|| gauges(metrics)).await;
}
