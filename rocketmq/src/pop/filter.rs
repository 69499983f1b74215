//! A subscription's filter expression, applied on the server: `*` (or empty) takes every
//! message; `TagA || TagB` takes messages tagged with one of the tags. SQL92 filters are
//! refused for now.

use proto::rocketmq::v2::{Code, FilterExpression, FilterType};

use crate::status::Refusal;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    All,
    Tags(Vec<String>),
}

impl Filter {
    pub fn parse(expression: Option<&FilterExpression>) -> Result<Self, Refusal> {
        let Some(expression) = expression else {
            return Ok(Filter::All);
        };
        if expression.r#type == FilterType::Sql as i32 {
            return Err(Refusal::new(
                Code::IllegalFilterExpression,
                format!(
                    "SQL filter \"{}\": only tag filters are served so far",
                    expression.expression
                ),
            ));
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

    pub fn takes(&self, tag: Option<&str>) -> bool {
        match self {
            Filter::All => true,
            Filter::Tags(tags) => tag.is_some_and(|t| tags.iter().any(|x| x == t)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(expression: &str) -> Option<FilterExpression> {
        Some(FilterExpression {
            r#type: FilterType::Tag as i32,
            expression: expression.into(),
        })
    }

    #[test]
    fn tag_expressions() {
        assert_eq!(Filter::parse(None).unwrap(), Filter::All);
        assert!(Filter::parse(tag("*").as_ref()).unwrap().takes(None));
        let f = Filter::parse(tag("TagA || TagB").as_ref()).unwrap();
        assert!(f.takes(Some("TagA")) && f.takes(Some("TagB")));
        assert!(!f.takes(Some("TagC")) && !f.takes(None));
        let bad = Filter::parse(tag("TagA ||").as_ref()).unwrap_err();
        assert_eq!(bad.code, Code::IllegalFilterExpression);
        let sql = FilterExpression {
            r#type: FilterType::Sql as i32,
            expression: "a > 1".into(),
        };
        assert!(
            Filter::parse(Some(&sql))
                .unwrap_err()
                .message
                .contains("SQL")
        );
    }
}
