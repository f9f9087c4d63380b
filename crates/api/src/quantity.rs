//! Kubernetes resource quantities (`128Mi`, `500m`, `1.5`, `2G`, `1e3`) as plain numbers.
//!
//! The grammar is Kubernetes' (`<number><suffix>`, binary suffixes `Ki`…`Ei`, decimal suffixes
//! `n u m k M G T P E`, or an exponent `e3`/`E3`); values round *up* to the unit asked for, as the
//! kubelet does (a limit of `0.5` bytes is one byte).

/// A quantity in bytes (`resources.*.memory`), rounded up.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let milli = parse_milli(s)?;
    u64::try_from(milli.div_ceil(1000)).map_err(|_| too_large(s))
}

/// A quantity in thousandths (`resources.*.cpu` in millicores), rounded up.
pub fn parse_millis(s: &str) -> Result<u64, String> {
    u64::try_from(parse_milli(s)?).map_err(|_| too_large(s))
}

fn too_large(s: &str) -> String {
    format!("{s:?} is not a valid quantity (too large)")
}

/// The value times 1000, rounded up.
fn parse_milli(s: &str) -> Result<u128, String> {
    let bad = |why: &str| {
        format!(
            "{s:?} is not a valid quantity ({why}); write e.g. \"128Mi\", \"1Gi\", \"500m\" or \"2\""
        )
    };
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    if s.starts_with('-') {
        return Err(bad("negative"));
    }
    let number = number.strip_prefix('+').unwrap_or(number);
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err(bad("no number"));
    }
    if !whole
        .bytes()
        .chain(frac.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return Err(bad("malformed number"));
    }
    let digits = format!("{whole}{frac}");
    let mantissa: u128 = digits
        .trim_start_matches('0')
        .parse::<u128>()
        .or_else(|_| {
            if digits.trim_start_matches('0').is_empty() {
                Ok(0)
            } else {
                Err(())
            }
        })
        .map_err(|()| bad("too large"))?;
    let (num, den) = multiplier(suffix).ok_or_else(|| bad("unknown suffix"))?;
    let scale = 10u128
        .checked_pow(u32::try_from(frac.len()).map_err(|_| bad("too long"))?)
        .ok_or_else(|| bad("too many decimals"))?;
    let numerator = mantissa
        .checked_mul(num)
        .and_then(|v| v.checked_mul(1000))
        .ok_or_else(|| bad("too large"))?;
    let denominator = scale.checked_mul(den).ok_or_else(|| bad("too large"))?;
    Ok(numerator.div_ceil(denominator))
}

/// The suffix as a fraction `num / den`.
fn multiplier(suffix: &str) -> Option<(u128, u128)> {
    let binary = |power: u32| Some((1024u128.pow(power), 1));
    let decimal = |exp: i32| {
        if exp >= 0 {
            Some((10u128.pow(exp.unsigned_abs()), 1))
        } else {
            Some((1, 10u128.pow(exp.unsigned_abs())))
        }
    };
    match suffix {
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "" => decimal(0),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        _ => {
            let exp = suffix.strip_prefix(['e', 'E'])?;
            let exp: i32 = exp.parse().ok().filter(|e: &i32| (-18..=18).contains(e))?;
            decimal(exp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_quantities() {
        assert_eq!(parse_bytes("128Mi"), Ok(134_217_728));
        assert_eq!(parse_bytes("1Gi"), Ok(1 << 30));
        assert_eq!(parse_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("1.5Ki"), Ok(1536));
        assert_eq!(parse_bytes("1e3"), Ok(1000));
        assert_eq!(parse_bytes("1E"), Ok(1_000_000_000_000_000_000));
        assert_eq!(parse_bytes("500m"), Ok(1), "rounded up");
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("+64"), Ok(64));
    }

    #[test]
    fn cpu_quantities() {
        assert_eq!(parse_millis("1"), Ok(1000));
        assert_eq!(parse_millis("125m"), Ok(125));
        assert_eq!(parse_millis("0.5"), Ok(500));
        assert_eq!(parse_millis("1.0001"), Ok(1001), "rounded up");
        assert_eq!(parse_millis("100u"), Ok(1));
    }

    #[test]
    fn bad_quantities_say_why() {
        for bad in [
            "",
            "Mi",
            "-1",
            "1Xi",
            "1.2.3",
            "abc",
            "99999999999999999999999Ei",
        ] {
            let e = parse_bytes(bad).unwrap_err();
            assert!(e.contains("not a valid quantity"), "{bad}: {e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,24}") {
            let _ = parse_bytes(&s);
            let _ = parse_millis(&s);
        }

        #[test]
        fn mebibytes_round_trip(n in 0u64..1_000_000) {
            proptest::prop_assert_eq!(parse_bytes(&format!("{n}Mi")), Ok(n << 20));
        }
    }
}
