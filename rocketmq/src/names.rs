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
    /// `authorization` with `x-mq-date-time`, when the client has credentials (verified by
    /// `access`).
    pub credential: Option<Credential>,
}

/// The SDKs' signature of a request: `authorization: MQv2-HMAC-SHA1 Credential=<access
/// key>, SignedHeaders=x-mq-date-time, Signature=<hex HMAC-SHA1 of the date-time under the
/// secret>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub algorithm: String,
    pub access_key: String,
    pub signed_headers: String,
    pub signature: String,
    /// `x-mq-date-time`, the signed text (`yyyyMMddTHHmmssZ`).
    pub date_time: String,
}

impl Credential {
    /// The credential of `authorization` (signing `date_time`), or what is wrong with it.
    pub fn parse(authorization: &str, date_time: &str) -> Result<Self, String> {
        let (algorithm, rest) = authorization
            .trim()
            .split_once(' ')
            .ok_or_else(|| format!("authorization {authorization:?} names no algorithm"))?;
        let field = |name: &str| {
            rest.split(',')
                .filter_map(|part| part.trim().split_once('='))
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.trim().to_string())
                .ok_or_else(|| format!("authorization has no {name}"))
        };
        Ok(Credential {
            algorithm: algorithm.to_string(),
            access_key: field("Credential")?,
            signed_headers: field("SignedHeaders")?,
            signature: field("Signature")?,
            date_time: date_time.to_string(),
        })
    }
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
            // The SDKs sign with an empty access key when they have no credentials.
            credential: text("authorization").and_then(|a| {
                let date_time = text("x-mq-date-time").unwrap_or_default();
                Credential::parse(&a, &date_time)
                    .inspect_err(|e| tracing::debug!(error = %e, "an unreadable authorization"))
                    .ok()
                    .filter(|c| !c.access_key.is_empty())
            }),
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
    fn the_sdks_authorization_is_parsed() {
        let mut metadata = MetadataMap::new();
        metadata.insert(
            "authorization",
            "MQv2-HMAC-SHA1 Credential=AK1, SignedHeaders=x-mq-date-time, Signature=0a1b"
                .parse()
                .unwrap(),
        );
        metadata.insert("x-mq-date-time", "20261203T101500Z".parse().unwrap());
        let credential = ClientMeta::from_metadata(&metadata).credential.unwrap();
        assert_eq!(credential.algorithm, "MQv2-HMAC-SHA1");
        assert_eq!(credential.access_key, "AK1");
        assert_eq!(credential.signed_headers, "x-mq-date-time");
        assert_eq!(credential.signature, "0a1b");
        assert_eq!(credential.date_time, "20261203T101500Z");
        let bad = Credential::parse("MQv2-HMAC-SHA1 Signature=0a1b", "").unwrap_err();
        assert!(bad.contains("no Credential"), "{bad}");
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
