//! A subscription's filter expression, applied on the server: a tag expression (`*` or
//! empty takes every message; `TagA || TagB` takes messages tagged with one of the tags) or
//! a SQL92 expression over the message's properties and its tag (`broker::sql`).

use broker::sql::SqlFilter;
use proto::rocketmq::v2::{Code, FilterExpression, FilterType};

use crate::status::Refusal;

#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    All,
    Tags(Vec<String>),
    Sql(SqlFilter),
}

impl Filter {
    pub fn parse(expression: Option<&FilterExpression>) -> Result<Self, Refusal> {
        let Some(expression) = expression else {
            return Ok(Filter::All);
        };
        if expression.r#type == FilterType::Sql as i32 {
            return SqlFilter::parse(&expression.expression)
                .map(Filter::Sql)
                .map_err(|e| {
                    Refusal::new(
                        Code::IllegalFilterExpression,
                        format!("SQL filter \"{}\": {e}", expression.expression),
                    )
                });
        }
        let text = expression.expression.trim();
        if text.is_empty() || text == "*" {
            return Ok(Filter::All);
        }
        let tags: Vec<String> = text.split("||").map(|t| t.trim().to_string()).collect();
        if tags.iter().any(|t| t.is_empty() || t == "*") {
            return Err(Refusal::new(
                Code::IllegalFilterExpression,
                format!("tag filter \"{text}\": expected `*` or `TagA || TagB`"),
            ));
        }
        Ok(Filter::Tags(tags))
    }

    pub fn takes(&self, record: &broker::Record) -> bool {
        let tag = record.tag.as_deref();
        match self {
            Filter::All => true,
            Filter::Tags(tags) => tag.is_some_and(|t| tags.iter().any(|x| x == t)),
            Filter::Sql(sql) => sql.matches(tag, &record.properties),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expression(kind: FilterType, text: &str) -> Option<FilterExpression> {
        Some(FilterExpression {
            r#type: kind as i32,
            expression: text.into(),
        })
    }

    fn message(tag: Option<&str>, properties: &[(&str, &str)]) -> broker::Record {
        broker::Record {
            tag: tag.map(str::to_string),
            properties: properties
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn tag_expressions() {
        assert_eq!(Filter::parse(None).unwrap(), Filter::All);
        let all = Filter::parse(expression(FilterType::Tag, "*").as_ref()).unwrap();
        assert!(all.takes(&message(None, &[])));
        let f = Filter::parse(expression(FilterType::Tag, "TagA || TagB").as_ref()).unwrap();
        assert!(f.takes(&message(Some("TagA"), &[])) && f.takes(&message(Some("TagB"), &[])));
        assert!(!f.takes(&message(Some("TagC"), &[])) && !f.takes(&message(None, &[])));
        let bad = Filter::parse(expression(FilterType::Tag, "TagA ||").as_ref()).unwrap_err();
        assert_eq!(bad.code, Code::IllegalFilterExpression);
    }

    #[test]
    fn sql_expressions_take_by_properties_and_bad_ones_say_where() {
        let f =
            Filter::parse(expression(FilterType::Sql, "a > 1 AND TAGS = 'T'").as_ref()).unwrap();
        assert!(f.takes(&message(Some("T"), &[("a", "2")])));
        assert!(!f.takes(&message(Some("T"), &[("a", "1")])));
        assert!(!f.takes(&message(None, &[("a", "2")])));
        let bad = Filter::parse(expression(FilterType::Sql, "a >").as_ref()).unwrap_err();
        assert_eq!(bad.code, Code::IllegalFilterExpression);
        assert!(bad.message.contains("offset 3"), "{}", bad.message);
    }
}
