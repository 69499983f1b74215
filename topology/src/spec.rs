//! The deployment's regions and links as configured (`[[regions]]`, `[[links]]`), every
//! region loading the same list, and their validation into a [`Topology`].
//!
//! A link joins two regions, has a kind (`public`, or `vpc` for a private link that one side
//! can only dial out of), a dialling side and a cost. Data flows both ways over a link
//! whichever side dialled it, so a region with no reachable address takes part fully
//! through the links it dials.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::residency::{Residency, ResidencySpec};

/// Cost of a link when the config gives none.
pub const DEFAULT_COST: u32 = 10;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSpec {
    pub name: String,
    /// Where the region accepts links (its `[listen] replication`, as others reach it).
    /// Omitted for a region that only dials out, and for regions this one never dials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<SocketAddr>,
    /// The addresses of the region's other nodes, tried in turn after `address` (a region
    /// of several nodes on shared storage: one of them holds its links at a time, the
    /// others turn links away in the handshake, so a dialler moves on to the next address;
    /// they serve the data-only connections of the dialling region's other nodes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_addresses: Vec<SocketAddr>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    #[default]
    Public,
    /// A private link: only the side named by `dial` can open it.
    Vpc,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// The two regions the link joins.
    pub between: [String; 2],
    #[serde(default)]
    pub kind: LinkKind,
    /// The region that opens the connection. Default: the region whose name sorts first.
    /// Required for `vpc` links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dial: Option<String>,
    /// Path cost of the link (positive). Routes take the cheapest healthy path.
    #[serde(default = "default_cost")]
    pub cost: u32,
}

fn default_cost() -> u32 {
    DEFAULT_COST
}

impl LinkSpec {
    pub fn new(a: &str, b: &str, cost: u32) -> Self {
        LinkSpec {
            between: [a.to_string(), b.to_string()],
            kind: LinkKind::Public,
            dial: None,
            cost,
        }
    }

    /// The region that dials this link.
    pub fn dialer(&self) -> &str {
        match &self.dial {
            Some(d) => d,
            None => self.between.iter().min().expect("two ends"),
        }
    }

    pub fn joins(&self, region: &str) -> bool {
        self.between.iter().any(|r| r == region)
    }

    /// The other end, when `region` is one end.
    pub fn other(&self, region: &str) -> Option<&str> {
        match &self.between {
            [a, b] if a == region => Some(b),
            [a, b] if b == region => Some(a),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologySpec {
    #[serde(default)]
    pub regions: Vec<RegionSpec>,
    #[serde(default)]
    pub links: Vec<LinkSpec>,
}

impl TopologySpec {
    /// A full mesh of `regions` with cost-10 public links; the lower name dials.
    pub fn mesh(regions: &[&str]) -> Self {
        let mut links = Vec::new();
        for (i, a) in regions.iter().enumerate() {
            for b in &regions[i + 1..] {
                links.push(LinkSpec::new(a, b, DEFAULT_COST));
            }
        }
        TopologySpec {
            regions: regions
                .iter()
                .map(|r| RegionSpec {
                    name: r.to_string(),
                    address: None,
                    other_addresses: Vec::new(),
                })
                .collect(),
            links,
        }
    }

    /// Sets the address of `region`.
    pub fn set_address(&mut self, region: &str, address: SocketAddr) {
        if let Some(r) = self.regions.iter_mut().find(|r| r.name == region) {
            r.address = Some(address);
        }
    }
}

/// A topology refused at load. The message names the entry and what is wrong with it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopologyError {
    #[error("[[regions]] {index}: {message}")]
    Region { index: usize, message: String },
    #[error("[[links]] {index} ({a} - {b}): {message}")]
    Link {
        index: usize,
        a: String,
        b: String,
        message: String,
    },
    #[error("[residency] {0}")]
    Residency(String),
    #[error("region \"{0}\" (this node) is not listed in [[regions]]")]
    ThisRegion(String),
}

/// A neighbour of one region: the other end of one of its links.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub region: String,
    /// Where it accepts links, in the order to try (empty: it only dials out, or this
    /// region never dials it).
    pub addresses: Vec<SocketAddr>,
    /// Whether this region opens the connection.
    pub dial: bool,
    pub kind: LinkKind,
    pub cost: u32,
}

/// A validated topology.
#[derive(Clone, Debug)]
pub struct Topology {
    /// Each region's addresses, `address` first.
    regions: BTreeMap<String, Vec<SocketAddr>>,
    links: Vec<LinkSpec>,
    pub residency: Residency,
}

impl Topology {
    /// Validates `spec` and `residency` as seen by region `me`: names are valid and unique,
    /// links join two distinct known regions once, costs are positive, a vpc link names
    /// its dialling side, and every link `me` dials has an address to dial.
    pub fn new(
        spec: &TopologySpec,
        residency: &ResidencySpec,
        me: &str,
    ) -> Result<Self, TopologyError> {
        let mut regions: BTreeMap<String, Vec<SocketAddr>> = BTreeMap::new();
        for (index, r) in spec.regions.iter().enumerate() {
            let err = |message: String| TopologyError::Region { index, message };
            if !valid_name(&r.name) {
                return Err(err(format!(
                    "name \"{}\" must be 1-64 letters, digits, '.', '_' or '-'",
                    r.name
                )));
            }
            if r.address.is_none() && !r.other_addresses.is_empty() {
                return Err(err(format!(
                    "region \"{}\" lists other_addresses but no address",
                    r.name
                )));
            }
            let addresses = r
                .address
                .into_iter()
                .chain(r.other_addresses.iter().copied());
            if regions
                .insert(r.name.clone(), addresses.collect())
                .is_some()
            {
                return Err(err(format!("region \"{}\" is listed twice", r.name)));
            }
        }
        if !regions.contains_key(me) {
            return Err(TopologyError::ThisRegion(me.to_string()));
        }
        let mut pairs = BTreeSet::new();
        for (index, link) in spec.links.iter().enumerate() {
            let [a, b] = &link.between;
            let err = |message: String| TopologyError::Link {
                index,
                a: a.clone(),
                b: b.clone(),
                message,
            };
            for end in [a, b] {
                if !regions.contains_key(end) {
                    return Err(err(format!(
                        "unknown region \"{end}\" (not in [[regions]])"
                    )));
                }
            }
            if a == b {
                return Err(err("a link must join two different regions".into()));
            }
            let pair = if a < b { (a, b) } else { (b, a) };
            if !pairs.insert(pair) {
                return Err(err(format!(
                    "duplicate link: {a} and {b} are already linked"
                )));
            }
            if link.cost == 0 {
                return Err(err("cost must be positive".into()));
            }
            if let Some(dial) = &link.dial
                && !link.joins(dial)
            {
                return Err(err(format!("dial = \"{dial}\" is not an end of this link")));
            }
            if link.kind == LinkKind::Vpc && link.dial.is_none() {
                return Err(err(
                    "a vpc link must name the side that dials out (dial = \"...\")".into(),
                ));
            }
            let dialer = link.dialer();
            let dialled = link.other(dialer).expect("an end");
            if dialer == me && regions[dialled].is_empty() {
                return Err(err(format!(
                    "{me} dials this link but region \"{dialled}\" has no address"
                )));
            }
        }
        let residency = Residency::new(residency, |r| regions.contains_key(r))
            .map_err(TopologyError::Residency)?;
        Ok(Topology {
            regions,
            links: spec.links.clone(),
            residency,
        })
    }

    pub fn regions(&self) -> impl Iterator<Item = &str> {
        self.regions.keys().map(String::as_str)
    }

    pub fn contains(&self, region: &str) -> bool {
        self.regions.contains_key(region)
    }

    pub fn links(&self) -> &[LinkSpec] {
        &self.links
    }

    /// The neighbours of `region`, by name.
    pub fn neighbours(&self, region: &str) -> Vec<Neighbour> {
        let mut out: Vec<Neighbour> = self
            .links
            .iter()
            .filter_map(|link| {
                let other = link.other(region)?;
                Some(Neighbour {
                    region: other.to_string(),
                    addresses: self.regions[other].clone(),
                    dial: link.dialer() == region,
                    kind: link.kind,
                    cost: link.cost,
                })
            })
            .collect();
        out.sort_by(|a, b| a.region.cmp(&b.region));
        out
    }

    /// The configured cost of the link between `a` and `b`, if they are linked.
    pub fn cost(&self, a: &str, b: &str) -> Option<u32> {
        self.links
            .iter()
            .find(|l| l.other(a) == Some(b))
            .map(|l| l.cost)
    }

    /// Whether some chain of links joins `a` and `b` (all links assumed up).
    pub fn connected(&self, a: &str, b: &str) -> bool {
        let mut seen = BTreeSet::from([a]);
        let mut frontier = vec![a];
        while let Some(r) = frontier.pop() {
            if r == b {
                return true;
            }
            for link in &self.links {
                if let Some(next) = link.other(r)
                    && seen.insert(next)
                {
                    frontier.push(next);
                }
            }
        }
        false
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml_text: &str) -> TopologySpec {
        toml::from_str(toml_text).expect("parses")
    }

    const LINE: &str = r#"
        [[regions]]
        name = "a"
        address = "127.0.0.1:1"
        [[regions]]
        name = "b"
        address = "127.0.0.1:2"
        [[regions]]
        name = "c"
        [[links]]
        between = ["a", "b"]
        [[links]]
        between = ["b", "c"]
        kind = "vpc"
        dial = "c"
        cost = 5
    "#;

    #[test]
    fn a_line_with_a_dial_out_region() {
        let t = Topology::new(&spec(LINE), &ResidencySpec::default(), "c").unwrap();
        assert_eq!(
            t.neighbours("c"),
            vec![Neighbour {
                region: "b".into(),
                addresses: vec!["127.0.0.1:2".parse().unwrap()],
                dial: true,
                kind: LinkKind::Vpc,
                cost: 5,
            }]
        );
        let b = t.neighbours("b");
        assert_eq!(b.len(), 2);
        assert!(
            !b[0].dial && !b[1].dial,
            "a dials a-b (lower name), c dials b-c"
        );
        assert!(t.connected("a", "c"));
        assert_eq!(t.cost("c", "b"), Some(5));
        assert_eq!(t.cost("a", "c"), None);
    }

    #[test]
    fn a_region_of_several_nodes_is_dialled_at_each_address_in_turn() {
        let text = r#"
            [[regions]]
            name = "a"
            [[regions]]
            name = "b"
            address = "127.0.0.1:2"
            other_addresses = ["127.0.0.1:3", "127.0.0.1:4"]
            [[links]]
            between = ["a", "b"]
        "#;
        let t = Topology::new(&spec(text), &ResidencySpec::default(), "a").unwrap();
        let ports: Vec<u16> = t.neighbours("a")[0]
            .addresses
            .iter()
            .map(|a| a.port())
            .collect();
        assert_eq!(ports, [2, 3, 4], "address first, then the others in order");
        let refusal = refused(
            "[[regions]]\nname = \"a\"\nother_addresses = [\"127.0.0.1:3\"]\n",
            "a",
        );
        assert_eq!(
            refusal,
            "[[regions]] 0: region \"a\" lists other_addresses but no address"
        );
    }

    fn refused(text: &str, me: &str) -> String {
        Topology::new(&spec(text), &ResidencySpec::default(), me)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn invalid_topologies_name_the_entry() {
        let regions = "[[regions]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n[[regions]]\nname = \"b\"\naddress = \"127.0.0.1:2\"\n";
        let cases = [
            (
                format!("{regions}[[links]]\nbetween = [\"a\", \"x\"]\n"),
                "[[links]] 0 (a - x): unknown region \"x\" (not in [[regions]])",
            ),
            (
                format!(
                    "{regions}[[links]]\nbetween = [\"a\", \"b\"]\n[[links]]\nbetween = [\"b\", \"a\"]\n"
                ),
                "[[links]] 1 (b - a): duplicate link: b and a are already linked",
            ),
            (
                format!("{regions}[[links]]\nbetween = [\"a\", \"a\"]\n"),
                "[[links]] 0 (a - a): a link must join two different regions",
            ),
            (
                format!("{regions}[[links]]\nbetween = [\"a\", \"b\"]\ncost = 0\n"),
                "[[links]] 0 (a - b): cost must be positive",
            ),
            (
                format!("{regions}[[links]]\nbetween = [\"a\", \"b\"]\nkind = \"vpc\"\n"),
                "[[links]] 0 (a - b): a vpc link must name the side that dials out (dial = \"...\")",
            ),
            (
                format!("{regions}[[links]]\nbetween = [\"a\", \"b\"]\ndial = \"z\"\n"),
                "[[links]] 0 (a - b): dial = \"z\" is not an end of this link",
            ),
            (
                format!("{regions}[[regions]]\nname = \"a\"\n"),
                "[[regions]] 2: region \"a\" is listed twice",
            ),
            (
                "[[regions]]\nname = \"a b\"\n[[links]]\nbetween = [\"a\", \"b\"]\n".to_string(),
                "[[regions]] 0: name \"a b\" must be 1-64 letters, digits, '.', '_' or '-'",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(refused(&text, "a"), expected, "for:\n{text}");
        }
        assert_eq!(
            refused(
                "[[regions]]\nname = \"a\"\n[[regions]]\nname = \"b\"\n[[links]]\nbetween = [\"a\", \"b\"]\n",
                "a"
            ),
            "[[links]] 0 (a - b): a dials this link but region \"b\" has no address"
        );
        assert_eq!(
            refused(regions, "q"),
            "region \"q\" (this node) is not listed in [[regions]]"
        );
    }

    #[test]
    fn mesh_links_every_pair_once() {
        let t = Topology::new(
            &TopologySpec::mesh(&["a", "b", "c"]),
            &ResidencySpec::default(),
            "c",
        )
        .unwrap();
        assert_eq!(t.links().len(), 3);
        assert_eq!(t.neighbours("b").len(), 2);
    }
}
