//! How hcall writes its figures into the JSON of `bench --json` and
//! `fuzz --json`.

use serde_json::{json, Value};

/// Where a verb's KTAP goes: stdout, or stderr with --json, so that stdout
/// then carries only the JSON.
pub fn ktap_stream(json: bool) -> Box<dyn std::io::Write> {
    if json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    }
}

/// A figure rounded to three decimals: more is noise, and it keeps
/// bench.json readable. NaN and infinities have no JSON form: null.
pub fn figure(x: f64) -> Value {
    json!((x * 1000.0).round() / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_rounded_and_never_nan() {
        assert_eq!(figure(1.23456), json!(1.235));
        assert_eq!(figure(f64::NAN), Value::Null);
        assert_eq!(figure(f64::INFINITY), Value::Null);
    }
}
