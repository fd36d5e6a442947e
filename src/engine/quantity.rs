//! Exact Kubernetes quantities, so `1Gi` equals `1024Mi` and `500m` is less than `1`.
//!
//! The API server rewrites quantities into canonical form (`1000m` comes back as `1`), so comparing
//! the strings would report drift where there is none.

use std::cmp::Ordering;
use std::fmt;

/// A quantity as an exact decimal: `numerator / 10^scale`, with no trailing zeros in `numerator`
/// while `scale > 0`, so equal values have equal representations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quantity {
    numerator: i128,
    scale: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a quantity (examples: 500m, 2, 1.5Gi, 10k)")]
pub struct QuantityError(pub String);

// Kubernetes caps quantities at 2^63-1; staying far below i128's range keeps arithmetic exact.
const MAX_DIGITS: usize = 30;
const MAX_EXPONENT: i32 = 30;

impl Quantity {
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let err = || QuantityError(text.to_string());
        let (negative, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_len);
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        if (int_part.is_empty() && frac_part.is_empty())
            || frac_part.contains('.')
            || int_part.len() + frac_part.len() > MAX_DIGITS
        {
            return Err(err());
        }
        let digits = format!("{int_part}{frac_part}");
        let mut numerator: i128 = digits.parse().map_err(|_| err())?;
        let mut exponent10: i32 = -(frac_part.len() as i32);
        let mut binary_shift: u32 = 0;
        match suffix {
            "" => {}
            "n" => exponent10 -= 9,
            "u" => exponent10 -= 6,
            "m" => exponent10 -= 3,
            "k" => exponent10 += 3,
            "M" => exponent10 += 6,
            "G" => exponent10 += 9,
            "T" => exponent10 += 12,
            "P" => exponent10 += 15,
            "E" => exponent10 += 18,
            "Ki" => binary_shift = 10,
            "Mi" => binary_shift = 20,
            "Gi" => binary_shift = 30,
            "Ti" => binary_shift = 40,
            "Pi" => binary_shift = 50,
            "Ei" => binary_shift = 60,
            _ => {
                let exp = suffix
                    .strip_prefix(['e', 'E'])
                    .filter(|e| !e.is_empty())
                    .ok_or_else(err)?;
                let exp: i32 = exp.parse().map_err(|_| err())?;
                if exp.abs() > MAX_EXPONENT {
                    return Err(err());
                }
                exponent10 += exp;
            }
        }
        numerator = numerator
            .checked_mul(1i128 << binary_shift)
            .ok_or_else(err)?;
        let mut scale = 0u32;
        if exponent10 >= 0 {
            numerator = numerator
                .checked_mul(10i128.checked_pow(exponent10 as u32).ok_or_else(err)?)
                .ok_or_else(err)?;
        } else {
            scale = exponent10.unsigned_abs();
        }
        if negative {
            numerator = -numerator;
        }
        Ok(Quantity { numerator, scale }.normalized())
    }

    fn normalized(mut self) -> Self {
        if self.numerator == 0 {
            self.scale = 0;
        }
        while self.scale > 0 && self.numerator % 10 == 0 {
            self.numerator /= 10;
            self.scale -= 1;
        }
        self
    }

    pub fn is_negative(&self) -> bool {
        self.numerator < 0
    }

    /// A whole number (`1k` is, `500m` is not).
    pub fn is_integer(&self) -> bool {
        self.scale == 0
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        let scale = self.scale.max(other.scale);
        let widen = |q: &Quantity| {
            10i128
                .checked_pow(scale - q.scale)
                .and_then(|f| q.numerator.checked_mul(f))
        };
        match (widen(self), widen(other)) {
            (Some(a), Some(b)) => a.cmp(&b),
            // Only reachable for absurd precision; an approximate order is then good enough.
            _ => {
                let approx = |q: &Quantity| q.numerator as f64 / 10f64.powi(q.scale as i32);
                approx(self).total_cmp(&approx(other))
            }
        }
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scale == 0 {
            return write!(f, "{}", self.numerator);
        }
        let sign = if self.numerator < 0 { "-" } else { "" };
        let digits = format!(
            "{:0>width$}",
            self.numerator.unsigned_abs(),
            width = self.scale as usize + 1
        );
        let (int, frac) = digits.split_at(digits.len() - self.scale as usize);
        write!(f, "{sign}{int}.{frac}")
    }
}

/// True when both strings parse and mean the same amount (or, failing to parse, are identical).
pub fn same_quantity(a: &str, b: &str) -> bool {
    match (Quantity::parse(a), Quantity::parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn equal_spellings_are_equal() {
        assert_eq!(q("1Gi"), q("1024Mi"));
        assert_eq!(q("1000m"), q("1"));
        assert_eq!(q("1.5"), q("1500m"));
        assert_eq!(q("1k"), q("1000"));
        assert_eq!(q("1e3"), q("1k"));
        assert_eq!(q("0.5Gi"), q("512Mi"));
        assert_eq!(q("+2"), q("2"));
        assert_eq!(q("0"), q("0m"));
        assert_eq!(q(".5"), q("500m"));
        assert_eq!(q("1E"), q("1e18"));
    }

    #[test]
    fn ordering_is_numeric() {
        assert!(q("500m") < q("1"));
        assert!(q("1Gi") > q("1G"));
        assert!(q("-1") < q("0"));
        assert!(q("100") > q("99.999"));
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            "", "lots", "1.2.3", "1X", "Gi", "1e", "--1", "1 Gi", "1ee3", "1e999", ".",
        ] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn display_is_exact() {
        assert_eq!(q("1500m").to_string(), "1.5");
        assert_eq!(q("5m").to_string(), "0.005");
        assert_eq!(q("-5m").to_string(), "-0.005");
        assert_eq!(q("2Ki").to_string(), "2048");
    }

    proptest! {
        #[test]
        fn millis_and_units_agree(n in 0i64..1_000_000_000) {
            prop_assert_eq!(q(&format!("{}", n)), q(&format!("{}m", n * 1000)));
            prop_assert_eq!(q(&format!("{}Ki", n)), q(&format!("{}", n * 1024)));
        }

        #[test]
        fn never_panics(s in "\\PC{0,12}") {
            let _ = Quantity::parse(&s);
        }

        #[test]
        fn order_matches_integers(a in -1_000_000i64..1_000_000, b in -1_000_000i64..1_000_000) {
            prop_assert_eq!(q(&format!("{a}m")).cmp(&q(&format!("{b}m"))), a.cmp(&b));
        }
    }
}
