//! SQL92 property filters, the subset RocketMQ serves: a boolean expression over a
//! message's properties (and its tag, as `TAGS`), evaluated on the server for consumers
//! and for replication tasks.
//!
//! - Comparisons `=`, `<>` (or `!=`), `<`, `<=`, `>`, `>=`; `BETWEEN a AND b`; `IN ('x',
//!   'y')`; `IS NULL`; `CONTAINS`, `STARTSWITH`, `ENDSWITH` 'text'; each but `IS` also with
//!   `NOT`; `AND`, `OR`, `NOT` and parentheses; `TRUE` and `FALSE`.
//! - Literals: numbers (`12`, `-3.5`, `1e3`), strings in single quotes (`''` is a quote).
//!   Keywords are case-insensitive; property names are not.
//! - Properties are text. A comparison with a number compares numerically, and is unknown
//!   when the property is not a number; ordering (`<` …, `BETWEEN`) is numeric only; `=`
//!   between two texts compares the text. A property the message lacks is NULL, and any
//!   comparison with NULL is unknown. Unknown follows SQL's three-valued logic (`NOT`
//!   unknown is unknown, `FALSE AND` unknown is false, `TRUE OR` unknown is true), and a
//!   message is taken only when the whole expression is true.
//!
//! The grammar is small and its meaning specific to RocketMQ (text-typed properties), so
//! it is parsed here (`lex`, `parse`) rather than through a general SQL parser, with
//! errors that name the byte offset where the expression went wrong.

mod lex;
mod parse;

use std::collections::BTreeMap;

use parse::{Expr, Operand};

/// What is wrong with a filter expression, and where (a byte offset).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("at offset {offset}: {message}")]
pub struct SqlError {
    pub offset: usize,
    pub message: String,
}

impl SqlError {
    fn at(offset: usize, message: impl Into<String>) -> Self {
        SqlError {
            offset,
            message: message.into(),
        }
    }
}

/// The longest filter expression taken.
pub const MAX_EXPRESSION: usize = 4096;

/// A parsed filter expression.
#[derive(Clone, Debug, PartialEq)]
pub struct SqlFilter {
    text: String,
    expr: Expr,
}

impl SqlFilter {
    pub fn parse(text: &str) -> Result<Self, SqlError> {
        if text.len() > MAX_EXPRESSION {
            return Err(SqlError::at(
                MAX_EXPRESSION,
                format!("the expression is longer than {MAX_EXPRESSION} bytes"),
            ));
        }
        let tokens = lex::tokens(text)?;
        let expr = parse::Parser::new(tokens, text.len()).expression()?;
        Ok(SqlFilter {
            text: text.to_string(),
            expr,
        })
    }

    /// The expression as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether a message with `tag` and `properties` passes.
    pub fn matches(&self, tag: Option<&str>, properties: &BTreeMap<String, String>) -> bool {
        let lookup = |name: &str| -> Option<&str> {
            if name == "TAGS" {
                tag
            } else {
                properties.get(name).map(String::as_str)
            }
        };
        eval(&self.expr, &lookup) == Some(true)
    }
}

/// A value during evaluation.
enum Value<'a> {
    Null,
    Text(&'a str),
    Number(f64),
    Bool(bool),
}

fn value<'a>(operand: &'a Operand, lookup: &dyn Fn(&str) -> Option<&'a str>) -> Value<'a> {
    match operand {
        Operand::Property(name) => lookup(name).map_or(Value::Null, Value::Text),
        Operand::Number(n) => Value::Number(*n),
        Operand::Str(s) => Value::Text(s),
        Operand::Bool(b) => Value::Bool(*b),
    }
}

fn number(value: &Value<'_>) -> Option<f64> {
    match value {
        Value::Number(n) => Some(*n),
        Value::Text(t) => t.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
        Value::Null | Value::Bool(_) => None,
    }
}

fn text<'a>(value: &Value<'a>) -> Option<&'a str> {
    match value {
        Value::Text(t) => Some(t),
        _ => None,
    }
}

/// Three-valued: `None` is unknown.
fn eval<'a>(expr: &'a Expr, lookup: &dyn Fn(&str) -> Option<&'a str>) -> Option<bool> {
    match expr {
        Expr::Or(a, b) => match (eval(a, lookup), eval(b, lookup)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Expr::And(a, b) => match (eval(a, lookup), eval(b, lookup)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Expr::Not(a) => eval(a, lookup).map(|b| !b),
        Expr::Bool(b) => Some(*b),
        Expr::Compare(left, op, right) => compare(value(left, lookup), op, value(right, lookup)),
        Expr::Between(operand, low, high) => {
            number(&value(operand, lookup)).map(|n| *low <= n && n <= *high)
        }
        Expr::In(operand, values) => {
            text(&value(operand, lookup)).map(|t| values.iter().any(|v| v == t))
        }
        Expr::IsNull(operand) => Some(matches!(value(operand, lookup), Value::Null)),
        Expr::Text(operand, op, needle) => text(&value(operand, lookup)).map(|t| match *op {
            "CONTAINS" => t.contains(needle.as_str()),
            "STARTSWITH" => t.starts_with(needle.as_str()),
            _ => t.ends_with(needle.as_str()),
        }),
    }
}

fn compare(left: Value<'_>, op: &str, right: Value<'_>) -> Option<bool> {
    let ordering = match (&left, &right) {
        (Value::Null, _) | (_, Value::Null) => return None,
        (Value::Number(_), _) | (_, Value::Number(_)) => {
            number(&left)?.partial_cmp(&number(&right)?)?
        }
        (Value::Text(a), Value::Text(b)) if matches!(op, "=" | "<>") => a.cmp(b),
        (Value::Bool(a), Value::Bool(b)) if matches!(op, "=" | "<>") => a.cmp(b),
        // Ordering between texts (two properties), or a boolean against a text.
        _ => return None,
    };
    use std::cmp::Ordering::*;
    Some(match op {
        "=" => ordering == Equal,
        "<>" => ordering != Equal,
        "<" => ordering == Less,
        "<=" => ordering != Greater,
        ">" => ordering == Greater,
        _ => ordering != Less,
    })
}

#[cfg(test)]
mod tests;
