//! Permissions: a grant names a resource pattern (`topic:orders*`, `group:billing`,
//! `task:*`, `cluster`) and the actions it allows there. A principal may do what one of its
//! grants allows; `cluster` with `admin` allows everything. Patterns are globs over the
//! resource's full name, so a RocketMQ namespace is a scope: `topic:shop.*` is every topic
//! of namespace `shop`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    // Topics.
    Produce,
    Consume,
    Create,
    Delete,
    Describe,
    // Groups (and `Consume`).
    Commit,
    // Tasks and DR.
    Read,
    Change,
    Failover,
    // The cluster: everything.
    Admin,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Produce => "produce",
            Action::Consume => "consume",
            Action::Create => "create",
            Action::Delete => "delete",
            Action::Describe => "describe",
            Action::Commit => "commit",
            Action::Read => "read",
            Action::Change => "change",
            Action::Failover => "failover",
            Action::Admin => "admin",
        }
    }
}

/// The kinds of resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Topic,
    Group,
    Task,
    Cluster,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Topic => "topic",
            Kind::Group => "group",
            Kind::Task => "task",
            Kind::Cluster => "cluster",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Kind::Topic, Kind::Group, Kind::Task, Kind::Cluster]
            .into_iter()
            .find(|k| k.as_str() == text)
    }

    /// The actions that mean something on this kind.
    fn actions(self) -> &'static [Action] {
        match self {
            Kind::Topic => &[
                Action::Produce,
                Action::Consume,
                Action::Create,
                Action::Delete,
                Action::Describe,
            ],
            Kind::Group => &[
                Action::Consume,
                Action::Commit,
                Action::Read,
                Action::Change,
            ],
            Kind::Task => &[Action::Read, Action::Change, Action::Failover],
            Kind::Cluster => &[Action::Admin],
        }
    }
}

/// A resource a request acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource<'a> {
    Topic(&'a str),
    Group(&'a str),
    Task(&'a str),
    Cluster,
}

impl Resource<'_> {
    fn kind(&self) -> Kind {
        match self {
            Resource::Topic(_) => Kind::Topic,
            Resource::Group(_) => Kind::Group,
            Resource::Task(_) => Kind::Task,
            Resource::Cluster => Kind::Cluster,
        }
    }

    fn name(&self) -> &str {
        match self {
            Resource::Topic(n) | Resource::Group(n) | Resource::Task(n) => n,
            Resource::Cluster => "",
        }
    }
}

impl fmt::Display for Resource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Cluster => f.write_str("cluster"),
            other => write!(f, "{}:{}", other.kind().as_str(), other.name()),
        }
    }
}

/// A grant as configured: `{resource = "topic:orders*", actions = ["produce"]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantSpec {
    pub resource: String,
    pub actions: Vec<Action>,
}

/// A checked grant.
#[derive(Clone, Debug)]
pub struct Grant {
    kind: Kind,
    pattern: glob::Pattern,
    actions: Vec<Action>,
}

impl Grant {
    /// The grant `spec` describes, or what is wrong with it.
    pub fn parse(spec: &GrantSpec) -> Result<Self, String> {
        let (kind, pattern) = match spec.resource.split_once(':') {
            Some((kind, pattern)) => (kind, pattern),
            None => (spec.resource.as_str(), "*"),
        };
        let kind = Kind::parse(kind).ok_or_else(|| {
            format!(
                "resource {:?}: expected topic:<glob>, group:<glob>, task:<glob> or cluster",
                spec.resource
            )
        })?;
        if pattern.trim().is_empty() {
            return Err(format!("resource {:?} has an empty pattern", spec.resource));
        }
        let pattern = glob::Pattern::new(pattern)
            .map_err(|e| format!("resource {:?}: invalid pattern: {e}", spec.resource))?;
        if spec.actions.is_empty() {
            return Err(format!("resource {:?} grants no action", spec.resource));
        }
        if let Some(bad) = spec.actions.iter().find(|a| !kind.actions().contains(a)) {
            return Err(format!(
                "resource {:?}: {} is not an action on a {} (those are {})",
                spec.resource,
                bad.as_str(),
                kind.as_str(),
                kind.actions()
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(Grant {
            kind,
            pattern,
            actions: spec.actions.clone(),
        })
    }

    /// Whether this grant allows `action` on `resource`.
    pub fn allows(&self, action: Action, resource: &Resource<'_>) -> bool {
        if self.kind == Kind::Cluster {
            return self.actions.contains(&Action::Admin);
        }
        self.kind == resource.kind()
            && self.actions.contains(&action)
            && self.pattern.matches(resource.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(resource: &str, actions: &[Action]) -> Grant {
        Grant::parse(&GrantSpec {
            resource: resource.into(),
            actions: actions.to_vec(),
        })
        .unwrap()
    }

    #[test]
    fn a_grant_allows_its_actions_on_matching_names_only() {
        let g = grant("topic:shop.*", &[Action::Produce, Action::Describe]);
        assert!(g.allows(Action::Produce, &Resource::Topic("shop.orders")));
        assert!(!g.allows(Action::Consume, &Resource::Topic("shop.orders")));
        assert!(!g.allows(Action::Produce, &Resource::Topic("bank.orders")));
        assert!(!g.allows(Action::Produce, &Resource::Group("shop.orders")));
    }

    #[test]
    fn cluster_admin_allows_everything() {
        let g = grant("cluster", &[Action::Admin]);
        assert!(g.allows(Action::Delete, &Resource::Topic("any")));
        assert!(g.allows(Action::Failover, &Resource::Task("dr")));
    }

    #[test]
    fn bad_grants_say_what_is_wrong() {
        let bad = |resource: &str, actions: &[Action]| {
            Grant::parse(&GrantSpec {
                resource: resource.into(),
                actions: actions.to_vec(),
            })
            .unwrap_err()
        };
        assert!(bad("queue:x", &[Action::Produce]).contains("expected topic:"));
        assert!(bad("topic:", &[Action::Produce]).contains("empty pattern"));
        assert!(bad("topic:x", &[]).contains("grants no action"));
        assert!(bad("group:x", &[Action::Produce]).contains("not an action on a group"));
        assert!(bad("topic:[", &[Action::Produce]).contains("invalid pattern"));
    }
}
