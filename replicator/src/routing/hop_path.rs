//! The hop path of replicated data: the regions that stored it, origin first. It is the
//! one owner of the two rules that keep replication loop-free and bounded:
//!
//! - **no loop**: data is never sent to, or accepted by, a region already on its path;
//! - **hop limit**: data whose path has reached the hop limit goes no further.
//!
//! Every place that checks a path (planning a pull, admitting a subscription, serving,
//! relaying, receiving) asks [`HopPath::admits`], so the rules cannot drift apart.

use std::fmt;

/// A hop path, origin first (borrowed from a frame, an advertisement or a request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HopPath<'a>(pub &'a [String]);

/// Why a path may not go on to a region.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HopError {
    #[error("already passed {region} (path {path})")]
    Loop { region: String, path: String },
    #[error("passed {hops} regions, the hop limit is {limit} (path {path})")]
    HopLimit {
        hops: usize,
        limit: usize,
        path: String,
    },
}

impl HopError {
    /// The metrics reason of the refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            HopError::Loop { .. } => "loop",
            HopError::HopLimit { .. } => "hop_limit",
        }
    }
}

impl HopPath<'_> {
    /// Whether `region` is on the path.
    pub fn passed(self, region: &str) -> bool {
        self.0.iter().any(|r| r == region)
    }

    /// Whether data with this path may go on to `region`, `limit` being the hop limit.
    pub fn admits(self, region: &str, limit: usize) -> Result<(), HopError> {
        if self.passed(region) {
            return Err(HopError::Loop {
                region: region.to_string(),
                path: self.to_string(),
            });
        }
        if self.0.len() >= limit {
            return Err(HopError::HopLimit {
                hops: self.0.len(),
                limit,
                path: self.to_string(),
            });
        }
        Ok(())
    }
}

impl fmt::Display for HopPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(empty)");
        }
        f.write_str(&self.0.join(" > "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(regions: &[&str]) -> Vec<String> {
        regions.iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn a_region_on_the_path_is_a_loop() {
        let p = path(&["eu", "us"]);
        let error = HopPath(&p).admits("eu", 8).unwrap_err();
        assert_eq!(error.reason(), "loop");
        assert_eq!(error.to_string(), "already passed eu (path eu > us)");
        assert!(HopPath(&p).passed("us"));
        assert!(!HopPath(&p).passed("ap"));
    }

    #[test]
    fn a_path_at_the_limit_goes_no_further() {
        let p = path(&["a", "b", "c"]);
        assert_eq!(HopPath(&p).admits("d", 4), Ok(()));
        let error = HopPath(&p).admits("d", 3).unwrap_err();
        assert_eq!(error.reason(), "hop_limit");
        assert!(error.to_string().contains("hop limit is 3"));
    }

    #[test]
    fn the_loop_rule_comes_before_the_limit() {
        let p = path(&["a", "b"]);
        assert_eq!(HopPath(&p).admits("a", 1).unwrap_err().reason(), "loop");
    }

    #[test]
    fn an_empty_path_admits_anyone() {
        assert_eq!(HopPath(&[]).admits("a", 1), Ok(()));
        assert_eq!(HopPath(&[]).to_string(), "(empty)");
    }
}
