//! The residency policy (`[residency]`): which relays keep nothing at rest, and which
//! records may exist only in a set of regions.
//!
//! A rule matches a record by tag or by property (`key = value`); a matching record is
//! never sent to a region outside the rule's set, on any path, direct or relayed. The
//! sender withholds it (the batch keeps its offsets, like a tag filter), so it never
//! reaches the network towards such a region. A region outside the set on the only path
//! between two regions of the set therefore blocks those records: they arrive as gaps.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResidencySpec {
    /// Relays that forward without storing: a region listed here keeps nothing at rest of
    /// the data it relays for others (it still stores what a task targets at it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pass_through: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<ResidencyRule>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResidencyRule {
    pub name: String,
    /// Records carrying one of these tags match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Records with one of these property values match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// The only regions where matching records may be.
    pub regions: Vec<String>,
}

/// The validated policy.
#[derive(Clone, Debug, Default)]
pub struct Residency {
    pass_through: BTreeSet<String>,
    rules: Vec<ResidencyRule>,
}

impl Residency {
    pub(crate) fn new(spec: &ResidencySpec, known: impl Fn(&str) -> bool) -> Result<Self, String> {
        for r in &spec.pass_through {
            if !known(r) {
                return Err(format!("pass_through: unknown region \"{r}\""));
            }
        }
        for (i, rule) in spec.rules.iter().enumerate() {
            let at = format!("rules[{i}] ({})", rule.name);
            if rule.tags.is_empty() && rule.properties.is_empty() {
                return Err(format!("{at}: give tags or properties to match records"));
            }
            if rule.regions.is_empty() {
                return Err(format!("{at}: regions must name at least one region"));
            }
            if let Some(r) = rule.regions.iter().find(|r| !known(r)) {
                return Err(format!("{at}: unknown region \"{r}\""));
            }
        }
        Ok(Residency {
            pass_through: spec.pass_through.iter().cloned().collect(),
            rules: spec.rules.clone(),
        })
    }

    /// Whether `region` relays without storing.
    pub fn pass_through(&self, region: &str) -> bool {
        self.pass_through.contains(region)
    }

    pub fn has_rules(&self) -> bool {
        !self.rules.is_empty()
    }

    /// Whether a record with this tag and these properties may be in `region`.
    pub fn allows(
        &self,
        tag: Option<&str>,
        properties: &BTreeMap<String, String>,
        region: &str,
    ) -> bool {
        self.rules.iter().all(|rule| {
            let matches = tag.is_some_and(|t| rule.tags.iter().any(|x| x == t))
                || rule
                    .properties
                    .iter()
                    .any(|(k, v)| properties.get(k) == Some(v));
            !matches || rule.regions.iter().any(|r| r == region)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eu_only() -> ResidencySpec {
        ResidencySpec {
            pass_through: vec!["us".into()],
            rules: vec![ResidencyRule {
                name: "eu-pii".into(),
                tags: vec!["eu-only".into()],
                properties: BTreeMap::from([("residency".into(), "eu".into())]),
                regions: vec!["eu1".into(), "eu2".into()],
            }],
        }
    }

    #[test]
    fn matching_records_stay_in_their_regions() {
        let r = Residency::new(&eu_only(), |_| true).unwrap();
        let none = BTreeMap::new();
        let eu_prop = BTreeMap::from([("residency".to_string(), "eu".to_string())]);
        assert!(r.allows(Some("eu-only"), &none, "eu2"));
        assert!(!r.allows(Some("eu-only"), &none, "us"));
        assert!(!r.allows(None, &eu_prop, "us"));
        assert!(r.allows(Some("other"), &none, "us"));
        assert!(r.allows(None, &none, "us"));
        assert!(r.pass_through("us") && !r.pass_through("eu1"));
    }

    #[test]
    fn invalid_policies_are_refused() {
        let known = |r: &str| r != "mars";
        let mut spec = eu_only();
        spec.rules[0].regions.push("mars".into());
        assert_eq!(
            Residency::new(&spec, known).unwrap_err(),
            "rules[0] (eu-pii): unknown region \"mars\""
        );
        let mut spec = eu_only();
        spec.rules[0].tags.clear();
        spec.rules[0].properties.clear();
        assert_eq!(
            Residency::new(&spec, known).unwrap_err(),
            "rules[0] (eu-pii): give tags or properties to match records"
        );
        let mut spec = eu_only();
        spec.pass_through = vec!["mars".into()];
        assert_eq!(
            Residency::new(&spec, known).unwrap_err(),
            "pass_through: unknown region \"mars\""
        );
    }
}
