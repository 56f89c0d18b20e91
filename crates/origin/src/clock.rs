//! Wall-clock helpers: Unix milliseconds and the two text forms the origin writes
//! (`EXT-X-PROGRAM-DATE-TIME` and the burned-in clock). No date crate: the civil-date
//! conversion is a dozen lines.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now as Unix milliseconds. A clock before 1970 reads as 0.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// `(year, month, day)` of the day `days` after 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's algorithm, shifted so the era starts on March 1st.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// RFC 3339 UTC with milliseconds, as HLS `EXT-X-PROGRAM-DATE-TIME` wants it:
/// `2026-11-27T14:03:22.123Z`.
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60,
        ms % 1000
    )
}

/// Time of day in UTC as `HH:MM:SS.mmm` (the burned-in clock).
pub fn hms_ms(ms: u64) -> String {
    let sod = (ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}.{:03}", sod / 3600, (sod / 60) % 60, sod % 60, ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (leap day) 12:34:56.789 UTC
        assert_eq!(rfc3339_ms(951_827_696_789), "2000-02-29T12:34:56.789Z");
        // 2026-11-27 00:00:00 UTC
        assert_eq!(rfc3339_ms(1_795_737_600_000), "2026-11-27T00:00:00.000Z");
        assert_eq!(hms_ms(951_827_696_789), "12:34:56.789");
    }
}
