//! The tokens of a filter expression, each with the byte offset it starts at (errors name
//! it). Keywords are case-insensitive; strings are in single quotes (`''` is a quote).

use super::SqlError;

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Token {
    Ident(String),
    Number(f64),
    Str(String),
    /// `=`, `<>`, `!=`, `<`, `<=`, `>`, `>=`
    Cmp(&'static str),
    LParen,
    RParen,
    Comma,
    /// A keyword, upper case.
    Word(&'static str),
}

const KEYWORDS: &[&str] = &[
    "AND",
    "OR",
    "NOT",
    "BETWEEN",
    "IN",
    "IS",
    "NULL",
    "TRUE",
    "FALSE",
    "CONTAINS",
    "STARTSWITH",
    "ENDSWITH",
];

pub(super) fn tokens(text: &str) -> Result<Vec<(usize, Token)>, SqlError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let token = match c {
            b'(' => {
                i += 1;
                Token::LParen
            }
            b')' => {
                i += 1;
                Token::RParen
            }
            b',' => {
                i += 1;
                Token::Comma
            }
            b'=' => {
                i += 1;
                Token::Cmp("=")
            }
            b'<' | b'>' | b'!' => {
                let two = text.get(i..i + 2).unwrap_or("");
                let (op, len) = match two {
                    "<>" | "!=" => ("<>", 2),
                    "<=" => ("<=", 2),
                    ">=" => (">=", 2),
                    _ if c == b'<' => ("<", 1),
                    _ if c == b'>' => (">", 1),
                    _ => return Err(SqlError::at(start, "`!` must be followed by `=`")),
                };
                i += len;
                Token::Cmp(op)
            }
            b'\'' => {
                let mut value = String::new();
                i += 1;
                loop {
                    let Some(rest) = text.get(i..) else {
                        return Err(SqlError::at(start, "a string is not closed"));
                    };
                    let Some(quote) = rest.find('\'') else {
                        return Err(SqlError::at(start, "a string is not closed"));
                    };
                    value.push_str(&rest[..quote]);
                    i += quote + 1;
                    if bytes.get(i) == Some(&b'\'') {
                        value.push('\'');
                        i += 1;
                    } else {
                        break;
                    }
                }
                Token::Str(value)
            }
            b'0'..=b'9' | b'-' | b'.' => {
                i += 1;
                while i < bytes.len()
                    && (bytes[i].is_ascii_digit() || matches!(bytes[i], b'.' | b'e' | b'E'))
                {
                    i += 1;
                }
                let literal = &text[start..i];
                let number = literal
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite())
                    .ok_or_else(|| SqlError::at(start, format!("`{literal}` is not a number")))?;
                Token::Number(number)
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'.'))
                {
                    i += 1;
                }
                let word = &text[start..i];
                match KEYWORDS.iter().find(|k| k.eq_ignore_ascii_case(word)) {
                    Some(k) => Token::Word(k),
                    None => Token::Ident(word.to_string()),
                }
            }
            _ => {
                let shown = text[start..].chars().next().unwrap_or('?');
                return Err(SqlError::at(start, format!("unexpected `{shown}`")));
            }
        };
        out.push((start, token));
    }
    Ok(out)
}
