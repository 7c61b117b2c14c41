//! Decimal numbers with a unit after them ("12.5 Mbit", "1.5 GiB"), shared
//! by rates and sizes: read with integer arithmetic, so that a fraction
//! means exactly the bits or bytes it says, with no floating-point rounding.

/// Splits "12.5 Mbit" into ("12.5", "Mbit").
pub(super) fn split_number(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(s.len());
    (s[..end].trim(), s[end..].trim())
}

/// Multiplies a decimal number written as text by an integer scale, exactly.
/// Fails on overflow; the fraction is truncated below one unit.
pub(super) fn scale_decimal(number: &str, scale: u64) -> Result<u128, String> {
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err("missing number".into());
    }
    if !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!("\"{number}\" is not a number"));
    }
    if int_part.len() > 30 || frac_part.len() > 18 {
        return Err(format!("\"{number}\" is too large or too precise"));
    }
    let int: u128 = if int_part.is_empty() {
        0
    } else {
        int_part
            .parse()
            .map_err(|_| "number too large".to_string())?
    };
    let mut value = int
        .checked_mul(u128::from(scale))
        .ok_or_else(|| "number too large".to_string())?;
    if !frac_part.is_empty() {
        let frac: u128 = frac_part
            .parse()
            .map_err(|_| "number too large".to_string())?;
        let denom = 10u128.pow(frac_part.len() as u32);
        value = value
            .checked_add(frac * u128::from(scale) / denom)
            .ok_or_else(|| "number too large".to_string())?;
    }
    Ok(value)
}
