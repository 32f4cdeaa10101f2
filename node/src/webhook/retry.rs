//! The retry policy of webhook deliveries, as a pure function of one attempt's answer.
//!
//! Retried: timeouts and connection errors, 5xx, 429 (honouring `Retry-After`), 408, 409 and
//! 425. Not retried: any other 4xx (the event goes to the dead-letter queue at once). `410 Gone`
//! disables the merchant's endpoint: its events wait until an operator re-enables it. After the
//! last delay of the schedule, the event goes to the dead-letter queue.

/// The default schedule, in seconds after each failed attempt: immediately, 5 s, 5 min, 30 min,
/// 2 h, 5 h, 10 h, 14 h, 20 h, 24 h (about three days), as the Standard Webhooks example.
pub const DEFAULT_SCHEDULE_S: [u64; 10] = [0, 5, 300, 1800, 7200, 18_000, 36_000, 50_400, 72_000, 86_400];

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Delivered (2xx).
    Delivered,
    /// Try again after this many ms.
    RetryIn(u64),
    /// Give up: dead-letter queue, with the reason.
    Dead(String),
    /// Stop delivering to this endpoint until re-enabled.
    DisableEndpoint(String),
}

/// Decides after attempt number `attempt` (1 = the first) that got `status` (`None`: timeout or
/// connection error) and `retry_after_s`, with `schedule[k]` the delay after the k-th failure
/// (the first entry is the delay before the first attempt).
pub fn decide(status: Option<u16>, retry_after_s: Option<u64>, attempt: u32, schedule: &[u64]) -> Decision {
    let retryable = match status {
        Some(200..=299) => return Decision::Delivered,
        Some(410) => return Decision::DisableEndpoint("endpoint answered 410 Gone".into()),
        None | Some(408 | 409 | 425 | 429 | 500..=599) => true,
        Some(_) => false,
    };
    if !retryable {
        return Decision::Dead(format!("HTTP {} is not retried", status.unwrap_or_default()));
    }
    match schedule.get(attempt as usize) {
        Some(delay_s) => {
            let honoured = if matches!(status, Some(429 | 503)) { retry_after_s.unwrap_or(0) } else { 0 };
            Decision::RetryIn((*delay_s).max(honoured).saturating_mul(1000))
        }
        None => Decision::Dead(format!("gave up after {attempt} attempts")),
    }
}

/// Seconds of a `Retry-After` header (delta-seconds form; dates and numbers beyond `u64` are
/// ignored), cut to `cap`.
pub fn retry_after(header: Option<&str>, cap: u64) -> Option<u64> {
    header.and_then(|h| h.trim().parse::<u64>().ok()).map(|s| s.min(cap))
}

#[cfg(test)]
mod tests {
    use super::Decision::*;
    use super::*;

    #[test]
    fn decision_table() {
        let s = &DEFAULT_SCHEDULE_S;
        let cases: [(Option<u16>, Option<u64>, u32, Decision); 12] = [
            (Some(200), None, 1, Delivered),
            (Some(204), None, 9, Delivered),
            (Some(500), None, 1, RetryIn(5_000)),
            (Some(503), None, 2, RetryIn(300_000)),
            (None, None, 1, RetryIn(5_000)),
            (Some(429), Some(60), 1, RetryIn(60_000)),
            (Some(429), Some(1), 2, RetryIn(300_000)),
            (Some(500), Some(60), 1, RetryIn(5_000)),
            (Some(408), None, 1, RetryIn(5_000)),
            (Some(400), None, 1, Dead("HTTP 400 is not retried".into())),
            (Some(410), None, 1, DisableEndpoint("endpoint answered 410 Gone".into())),
            (Some(500), None, 10, Dead("gave up after 10 attempts".into())),
        ];
        for (status, ra, attempt, want) in cases {
            assert_eq!(decide(status, ra, attempt, s), want, "{status:?} {ra:?} {attempt}");
        }
        assert_eq!(retry_after(Some(" 30 "), 3600), Some(30));
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT"), 3600), None);
        assert_eq!(retry_after(Some("18446744073709551615"), 3600), Some(3600), "capped");
        assert_eq!(retry_after(Some("99999999999999999999999"), 3600), None, "beyond u64");
        // The arithmetic saturates even with an uncapped value.
        assert_eq!(decide(Some(429), Some(u64::MAX), 1, s), RetryIn(u64::MAX));
    }
}
