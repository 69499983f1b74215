//! The hop path of the data this region holds of each sub-log (origin first, this region
//! last), learnt from the frames applied. Written by the pulls, read by serving streams and
//! advertisements; a leaf lock.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::observe::SubLogKey;

#[derive(Default)]
pub(crate) struct HopPaths {
    paths: Mutex<HashMap<SubLogKey, Vec<String>>>,
}

impl HopPaths {
    /// The path of what `region` holds of `key`: the region alone for its own data, the
    /// path learnt, or origin then this region before anything was applied.
    pub fn of(&self, key: &SubLogKey, region: &str) -> Vec<String> {
        if key.origin == region {
            return vec![region.to_string()];
        }
        self.paths
            .lock()
            .expect("hop paths lock")
            .get(key)
            .cloned()
            .unwrap_or_else(|| vec![key.origin.clone(), region.to_string()])
    }

    pub fn learnt(&self, key: &SubLogKey, path: Vec<String>) {
        let mut paths = self.paths.lock().expect("hop paths lock");
        if paths.get(key) != Some(&path) {
            paths.insert(key.clone(), path);
        }
    }

    /// Forgets the paths of topics for which `keep` is false.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.paths
            .lock()
            .expect("hop paths lock")
            .retain(|key, _| keep(&key.topic));
    }
}
