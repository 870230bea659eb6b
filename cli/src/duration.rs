//! `timeout`-style durations: [`parse_duration`].

use std::error::Error;
use std::fmt;
use std::time::Duration;

/// Why [`parse_duration`] rejected its input. Each variant carries the
/// offending input (trimmed) for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    /// The input was empty or only whitespace.
    Empty,
    /// The number was negative.
    Negative(String),
    /// The number was NaN or infinite.
    NotFinite(String),
    /// The number part was not a plain decimal number.
    BadNumber(String),
    /// The suffix was not one of `s`, `m`, `h`, `d`, `ms`.
    BadSuffix {
        /// The whole input.
        input: String,
        /// The unrecognised suffix.
        suffix: String,
    },
    /// The duration does not fit in a [`Duration`].
    Overflow(String),
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const EXPECTED: &str =
            "expected a non-negative decimal number with an optional suffix s, m, h, d or ms";
        match self {
            DurationError::Empty => write!(f, "empty duration: {EXPECTED}"),
            DurationError::Negative(s) => write!(f, "negative duration {s:?}: {EXPECTED}"),
            DurationError::NotFinite(s) => write!(f, "duration {s:?} is not a finite number"),
            DurationError::BadNumber(s) => write!(f, "invalid duration {s:?}: {EXPECTED}"),
            DurationError::BadSuffix { input, suffix } if is_exponent(suffix) => write!(
                f,
                "invalid duration {input:?}: exponents ({suffix:?}) are not accepted; write the \
                 number out, with an optional suffix s, m, h, d or ms"
            ),
            DurationError::BadSuffix { input, suffix } => write!(
                f,
                "invalid duration {input:?}: unknown suffix {suffix:?} (use s, m, h, d or ms)"
            ),
            DurationError::Overflow(s) => write!(f, "duration {s:?} is too large ({LARGEST})"),
        }
    }
}

impl Error for DurationError {}

/// What the messages say about the largest duration.
pub(crate) const LARGEST: &str =
    "at most 18446744073709551615.999999999 seconds, about 585 billion years";

/// `e3`, `E+6`, `e-2`, `e99s`: what an exponent looks like after the number.
fn is_exponent(suffix: &str) -> bool {
    let mut rest = suffix.chars();
    matches!(rest.next(), Some('e' | 'E'))
        && rest
            .as_str()
            .trim_start_matches(['+', '-'])
            .starts_with(|c: char| c.is_ascii_digit())
}

const NANOS_PER_SEC: u128 = 1_000_000_000;
/// Fractional digits beyond this many are only used to round up.
const MAX_FRACTION_DIGITS: usize = 24;

/// Parses a duration the way coreutils `timeout` does: a non-negative decimal
/// number, fractions allowed, with an optional unit suffix `s` (seconds, the
/// default), `m` (minutes), `h` (hours), `d` (days) or `ms` (milliseconds).
///
/// Surrounding whitespace is ignored and a leading `+` is allowed. `0` is
/// valid (what it means is up to the caller). The value is computed exactly in
/// decimal and rounded *up* to a whole nanosecond, so a positive input never
/// becomes zero. Rejected, each with its own [`DurationError`]: empty input,
/// negative numbers (including `-0`), `nan`/`inf`, exponents (`1e3`), other
/// suffixes (`S`, `sec`, `1h30m`), and durations beyond [`Duration::MAX`]
/// (`99999999999999999999d`). Every duration up to `Duration::MAX` is accepted:
/// as a timeout or grace period, one too long for the clock means no limit
/// (DESIGN.md, "The deadline rule").
///
/// ```
/// use procman_cli::parse_duration;
/// use std::time::Duration;
/// assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
/// assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
/// assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
/// assert!(parse_duration("-1").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let input = s.trim();
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    let owned = || input.to_owned();
    let body = if let Some(rest) = input.strip_prefix('-') {
        // "-" followed by anything number-like is a negative; "-x" is garbage.
        if rest.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
            return Err(DurationError::Negative(owned()));
        }
        return Err(DurationError::BadNumber(owned()));
    } else {
        input.strip_prefix('+').unwrap_or(input)
    };
    let lower = body.to_ascii_lowercase();
    if lower.starts_with("inf") || lower.starts_with("nan") {
        return Err(DurationError::NotFinite(owned()));
    }

    let number_len = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(number_len);
    let (int_digits, frac_digits) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if frac_digits.contains('.') || (int_digits.is_empty() && frac_digits.is_empty()) {
        return Err(DurationError::BadNumber(owned()));
    }
    let unit_nanos: u128 = match suffix {
        "" | "s" => NANOS_PER_SEC,
        "ms" => 1_000_000,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3600 * NANOS_PER_SEC,
        "d" => 86_400 * NANOS_PER_SEC,
        _ => {
            return Err(DurationError::BadSuffix {
                input: owned(),
                suffix: suffix.to_owned(),
            })
        }
    };

    // Integer part, exactly (an over-long one overflows below anyway).
    let int_digits = int_digits.trim_start_matches('0');
    if int_digits.len() > 30 {
        return Err(DurationError::Overflow(owned()));
    }
    let mut int_value: u128 = 0;
    for d in int_digits.bytes() {
        int_value = int_value * 10 + u128::from(d - b'0');
    }
    let int_nanos = int_value
        .checked_mul(unit_nanos)
        .ok_or_else(|| DurationError::Overflow(owned()))?;

    let total = int_nanos
        .checked_add(fraction_nanos(frac_digits, unit_nanos))
        .ok_or_else(|| DurationError::Overflow(owned()))?;
    let secs =
        u64::try_from(total / NANOS_PER_SEC).map_err(|_| DurationError::Overflow(owned()))?;
    // The remainder is below 10^9 and fits in u32.
    let nanos = (total % NANOS_PER_SEC) as u32;
    Ok(Duration::new(secs, nanos))
}

/// The nanoseconds of the fraction `0.DIGITS` of a unit of `unit_nanos`, rounded up: the first
/// MAX_FRACTION_DIGITS digits exactly, the rest only to decide whether to round up. `digits`
/// are ASCII digits.
fn fraction_nanos(digits: &str, unit_nanos: u128) -> u128 {
    let (head, tail) = digits.split_at(digits.len().min(MAX_FRACTION_DIGITS));
    let mut frac_value: u128 = 0;
    let mut scale: u128 = 1;
    for d in head.bytes() {
        frac_value = frac_value * 10 + u128::from(d - b'0');
        scale *= 10;
    }
    // frac_value < 10^24 and unit_nanos < 10^14: the product fits in u128.
    let scaled = frac_value * unit_nanos;
    let mut frac_nanos = scaled / scale;
    if scaled % scale != 0 || tail.bytes().any(|d| d != b'0') {
        frac_nanos += 1;
    }
    frac_nanos
}
