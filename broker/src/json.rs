//! Whole numbers as JSON Schema means them: `3` and `3.0` are the same integer, so an
//! API that documents a field as an integer takes both (and refuses `3.5`). For
//! `#[serde(deserialize_with = ...)]` on the API's integer fields.

use std::collections::BTreeMap;

use serde::de::Error;
use serde::{Deserialize, Deserializer};

/// `n` as a whole number, if it is one (a float with no fraction within u64 included).
fn whole(n: &serde_json::Number) -> Option<u64> {
    n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 18_446_744_073_709_551_616.0)
            .map(|f| f as u64)
    })
}

fn convert<T: TryFrom<u64>, E: Error>(n: &serde_json::Number) -> Result<T, E> {
    whole(n).and_then(|v| T::try_from(v).ok()).ok_or_else(|| {
        E::custom(format!(
            "invalid value: {n}, expected a whole number no larger than the field holds"
        ))
    })
}

pub fn integer<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
    convert(&serde_json::Number::deserialize(d)?)
}

pub fn optional_integer<'de, D: Deserializer<'de>, T: TryFrom<u64>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Option::<serde_json::Number>::deserialize(d)?
        .map(|n| convert(&n))
        .transpose()
}

pub fn integer_map<'de, D: Deserializer<'de>, T: TryFrom<u64>>(
    d: D,
) -> Result<BTreeMap<String, T>, D::Error> {
    BTreeMap::<String, serde_json::Number>::deserialize(d)?
        .into_iter()
        .map(|(k, n)| Ok((k, convert(&n)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Sample {
        #[serde(deserialize_with = "integer")]
        small: u32,
        #[serde(default, deserialize_with = "optional_integer")]
        maybe: Option<u64>,
        #[serde(default, deserialize_with = "integer_map")]
        map: BTreeMap<String, u64>,
    }

    #[test]
    fn whole_floats_are_integers_and_fractions_are_not() {
        let s: Sample =
            serde_json::from_str(r#"{"small": 3.0, "maybe": 7, "map": {"eu": 12.0}}"#).unwrap();
        assert_eq!(
            s,
            Sample {
                small: 3,
                maybe: Some(7),
                map: [("eu".to_string(), 12)].into()
            }
        );
        for bad in [
            r#"{"small": 3.5}"#,
            r#"{"small": -1}"#,
            r#"{"small": 4294967296}"#,
            r#"{"small": 1, "map": {"eu": 0.5}}"#,
        ] {
            let err = serde_json::from_str::<Sample>(bad).unwrap_err();
            assert!(err.to_string().contains("whole number"), "{bad}: {err}");
        }
        let absent: Sample = serde_json::from_str(r#"{"small": 1}"#).unwrap();
        assert_eq!(absent.maybe, None);
    }
}
