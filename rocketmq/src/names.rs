//! Names on the wire and in georouter. A RocketMQ `Resource` is `(namespace, name)`; a
//! namespace is a prefix of topic and group names in the region: resource `orders` in
//! namespace `shop` is georouter topic `shop.orders`, and without a namespace just
//! `orders`. The namespace comes from the resource, or else from the request's
//! `x-mq-namespace` metadata.

use proto::rocketmq::v2::{Code, Resource};
use tonic::metadata::MetadataMap;

use crate::status::Refusal;

/// What the SDKs put in every request's metadata, as far as the access point uses it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientMeta {
    /// `x-mq-client-id`: one client instance.
    pub client_id: Option<String>,
    /// `x-mq-namespace`: the default namespace of the request's resources.
    pub namespace: String,
}

impl ClientMeta {
    pub fn from_metadata(metadata: &MetadataMap) -> Self {
        let text = |key: &str| {
            metadata
                .get(key)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        ClientMeta {
            client_id: text("x-mq-client-id").filter(|c| !c.is_empty()),
            namespace: text("x-mq-namespace").unwrap_or_default(),
        }
    }

    /// The georouter name of `resource` (a topic or a group); `what` names it in errors.
    pub fn name_of(&self, resource: Option<&Resource>, what: &str) -> Result<String, Refusal> {
        let resource = resource.ok_or_else(|| {
            Refusal::new(Code::BadRequest, format!("the request names no {what}"))
        })?;
        if resource.name.is_empty() {
            return Err(Refusal::new(
                Code::BadRequest,
                format!("the request's {what} has an empty name"),
            ));
        }
        let namespace = if resource.resource_namespace.is_empty() {
            &self.namespace
        } else {
            &resource.resource_namespace
        };
        Ok(if namespace.is_empty() {
            resource.name.clone()
        } else {
            format!("{namespace}.{}", resource.name)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(namespace: &str, name: &str) -> Resource {
        Resource {
            resource_namespace: namespace.into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_namespace_prefixes_the_name() {
        let meta = ClientMeta::default();
        assert_eq!(
            meta.name_of(Some(&resource("", "orders")), "topic")
                .unwrap(),
            "orders"
        );
        assert_eq!(
            meta.name_of(Some(&resource("shop", "orders")), "topic")
                .unwrap(),
            "shop.orders"
        );
        let shop = ClientMeta {
            namespace: "shop".into(),
            ..Default::default()
        };
        assert_eq!(
            shop.name_of(Some(&resource("", "orders")), "topic")
                .unwrap(),
            "shop.orders"
        );
    }

    #[test]
    fn a_missing_or_empty_name_is_a_bad_request() {
        let meta = ClientMeta::default();
        let missing = meta.name_of(None, "topic").unwrap_err();
        assert_eq!(missing.code, Code::BadRequest);
        assert!(missing.message.contains("names no topic"));
        let empty = meta.name_of(Some(&resource("", "")), "group").unwrap_err();
        assert!(empty.message.contains("group has an empty name"));
    }
}
