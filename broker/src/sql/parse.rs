//! The grammar, by recursive descent (lowest precedence first):
//!
//! ```text
//! or        := and ("OR" and)*
//! and       := not ("AND" not)*
//! not       := "NOT" not | "(" or ")" | TRUE | FALSE | predicate
//! predicate := operand ( cmp operand
//!                      | ["NOT"] "BETWEEN" number "AND" number
//!                      | ["NOT"] "IN" "(" string ("," string)* ")"
//!                      | "IS" ["NOT"] "NULL"
//!                      | ["NOT"] ("CONTAINS" | "STARTSWITH" | "ENDSWITH") string )
//! operand   := property | number | string | TRUE | FALSE
//! ```

use super::SqlError;
use super::lex::Token;

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Operand {
    Property(String),
    Number(f64),
    Str(String),
    Bool(bool),
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Bool(bool),
    Compare(Operand, &'static str, Operand),
    Between(Operand, f64, f64),
    In(Operand, Vec<String>),
    IsNull(Operand),
    /// CONTAINS, STARTSWITH or ENDSWITH.
    Text(Operand, &'static str, String),
}

pub(super) struct Parser {
    tokens: Vec<(usize, Token)>,
    at: usize,
    /// The length of the text (where "the end" is).
    end: usize,
    /// Parentheses and NOTs open now (bounded, so a hostile expression cannot exhaust the
    /// stack).
    depth: usize,
}

/// The deepest nesting of parentheses and NOTs taken.
const MAX_DEPTH: usize = 64;

impl Parser {
    pub fn new(tokens: Vec<(usize, Token)>, end: usize) -> Self {
        Parser {
            tokens,
            at: 0,
            end,
            depth: 0,
        }
    }

    /// The whole expression: anything after it is an error.
    pub fn expression(mut self) -> Result<Expr, SqlError> {
        if self.tokens.is_empty() {
            return Err(SqlError::at(0, "the expression is empty"));
        }
        let expr = self.or()?;
        if let Some((at, token)) = self.tokens.get(self.at) {
            return Err(SqlError::at(
                *at,
                format!("unexpected {} after the expression", shown(token)),
            ));
        }
        Ok(expr)
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(_, t)| t)
    }

    fn position(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end, |(at, _)| *at)
    }

    fn next(&mut self, expected: &str) -> Result<Token, SqlError> {
        let token = self
            .tokens
            .get(self.at)
            .map(|(_, t)| t.clone())
            .ok_or_else(|| SqlError::at(self.end, format!("expected {expected}, found the end")))?;
        self.at += 1;
        Ok(token)
    }

    fn word(&mut self, word: &str) -> bool {
        let found = matches!(self.peek(), Some(Token::Word(w)) if *w == word);
        if found {
            self.at += 1;
        }
        found
    }

    fn expect_word(&mut self, word: &'static str) -> Result<(), SqlError> {
        let at = self.position();
        match self.next(word)? {
            Token::Word(w) if w == word => Ok(()),
            other => Err(SqlError::at(
                at,
                format!("expected {word}, found {}", shown(&other)),
            )),
        }
    }

    fn or(&mut self) -> Result<Expr, SqlError> {
        let mut left = self.and()?;
        while self.word("OR") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, SqlError> {
        let mut left = self.not()?;
        while self.word("AND") {
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, SqlError> {
        let nested = matches!(self.peek(), Some(Token::LParen | Token::Word("NOT")));
        if !nested {
            return self.predicate();
        }
        if self.depth == MAX_DEPTH {
            return Err(SqlError::at(
                self.position(),
                format!("nested more than {MAX_DEPTH} deep"),
            ));
        }
        self.depth += 1;
        let expr = if self.word("NOT") {
            Expr::Not(Box::new(self.not()?))
        } else {
            self.at += 1;
            let inner = self.or()?;
            let at = self.position();
            match self.next("`)`")? {
                Token::RParen => inner,
                other => {
                    return Err(SqlError::at(
                        at,
                        format!("expected `)`, found {}", shown(&other)),
                    ));
                }
            }
        };
        self.depth -= 1;
        Ok(expr)
    }

    fn operand(&mut self) -> Result<Operand, SqlError> {
        let at = self.position();
        Ok(match self.next("a property or a value")? {
            Token::Ident(name) => Operand::Property(name),
            Token::Number(n) => Operand::Number(n),
            Token::Str(s) => Operand::Str(s),
            Token::Word("TRUE") => Operand::Bool(true),
            Token::Word("FALSE") => Operand::Bool(false),
            other => {
                return Err(SqlError::at(
                    at,
                    format!("expected a property or a value, found {}", shown(&other)),
                ));
            }
        })
    }

    fn number(&mut self) -> Result<f64, SqlError> {
        let at = self.position();
        match self.next("a number")? {
            Token::Number(n) => Ok(n),
            other => Err(SqlError::at(
                at,
                format!("expected a number, found {}", shown(&other)),
            )),
        }
    }

    fn string(&mut self) -> Result<String, SqlError> {
        let at = self.position();
        match self.next("a string")? {
            Token::Str(s) => Ok(s),
            other => Err(SqlError::at(
                at,
                format!("expected a 'string', found {}", shown(&other)),
            )),
        }
    }

    fn predicate(&mut self) -> Result<Expr, SqlError> {
        let start = self.position();
        let left = self.operand()?;
        let at = self.position();
        if let Some(Token::Cmp(op)) = self.peek().cloned() {
            self.at += 1;
            let right_at = self.position();
            let right = self.operand()?;
            let ordering = !matches!(op, "=" | "<>");
            for (side, operand) in [(start, &left), (right_at, &right)] {
                if ordering && matches!(operand, Operand::Str(_) | Operand::Bool(_)) {
                    return Err(SqlError::at(side, format!("`{op}` compares numbers only")));
                }
            }
            return Ok(Expr::Compare(left, op, right));
        }
        if self.word("IS") {
            let negated = self.word("NOT");
            self.expect_word("NULL")?;
            return Ok(negate(negated, Expr::IsNull(left)));
        }
        if let Operand::Bool(b) = left {
            return Ok(Expr::Bool(b));
        }
        let negated = self.word("NOT");
        let expr = match self.next("an operator")? {
            Token::Word("BETWEEN") => {
                let low = self.number()?;
                self.expect_word("AND")?;
                Expr::Between(left, low, self.number()?)
            }
            Token::Word("IN") => {
                let at = self.position();
                if self.next("`(`")? != Token::LParen {
                    return Err(SqlError::at(at, "expected `(` after IN"));
                }
                let mut values = vec![self.string()?];
                loop {
                    let at = self.position();
                    match self.next("`,` or `)`")? {
                        Token::Comma => values.push(self.string()?),
                        Token::RParen => break,
                        other => {
                            return Err(SqlError::at(
                                at,
                                format!("expected `,` or `)`, found {}", shown(&other)),
                            ));
                        }
                    }
                }
                Expr::In(left, values)
            }
            Token::Word(op @ ("CONTAINS" | "STARTSWITH" | "ENDSWITH")) => {
                Expr::Text(left, op, self.string()?)
            }
            other => {
                return Err(SqlError::at(
                    at,
                    format!(
                        "expected a comparison, BETWEEN, IN, IS or CONTAINS after the operand at {start}, found {}",
                        shown(&other)
                    ),
                ));
            }
        };
        Ok(negate(negated, expr))
    }
}

fn negate(negated: bool, expr: Expr) -> Expr {
    if negated {
        Expr::Not(Box::new(expr))
    } else {
        expr
    }
}

fn shown(token: &Token) -> String {
    match token {
        Token::Ident(name) => format!("`{name}`"),
        Token::Number(n) => format!("`{n}`"),
        Token::Str(s) => format!("'{s}'"),
        Token::Cmp(op) => format!("`{op}`"),
        Token::LParen => "`(`".into(),
        Token::RParen => "`)`".into(),
        Token::Comma => "`,`".into(),
        Token::Word(w) => w.to_string(),
    }
}
