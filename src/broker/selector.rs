//! JMS message selectors: the `apache.org:selector-filter:string` filter.
//!
//! A selector is the conditional-expression subset of SQL-92 that JMS 2.0 (§3.8.1) defines
//! for picking messages by their headers and properties. Consumers of queues have it applied
//! at dispatch, subscriptions at routing. [`Selector::parse`] compiles the text once into a
//! small tree; [`Selector::matches`] evaluates it against anything that can look identifiers
//! up ([`Fields`]), such as a message through [`MessageFields`].
//!
//! # Semantics
//!
//! Evaluation uses SQL's three-valued logic: a missing property is NULL, and anything
//! computed from NULL is UNKNOWN, as is every operation on operands of the wrong type. Only
//! TRUE selects; FALSE and UNKNOWN do not. Where the JMS text is silent or where Ferry
//! deliberately differs, the choice is:
//!
//! - Comparing values of different types (a string with a number, a boolean with a string)
//!   is UNKNOWN. JMS says FALSE; UNKNOWN keeps `NOT (color = 5)` from selecting every
//!   message whose `color` is a string, which is what SQL does with incomparable values.
//! - Integer and floating-point operands meet as doubles (the JMS promotion rule). Strings
//!   and booleans compare with `=` and `<>` only; writing `<` and friends with a string or
//!   boolean literal is a parse error, and with a property that turns out to hold one it is
//!   UNKNOWN.
//! - Integer arithmetic that overflows, and division by zero (integer or floating), are
//!   UNKNOWN rather than wrapping or producing an infinity.
//! - `IN` lists may hold numbers as well as the strings JMS allows. `x IN (a, b)` behaves
//!   like `x = a OR x = b`, so a string list never matches a number (UNKNOWN).
//! - `LIKE`, `IN`, `BETWEEN` and `IS NULL` take any expression on their left, not only the
//!   identifier the JMS grammar names; `(price * qty) BETWEEN 10 AND 20` is allowed.
//! - `LIKE` matches Unicode scalar values: `_` is one `char`, not one UTF-16 unit. After the
//!   `ESCAPE` character any character is literal; an escape at the very end is an error.
//! - Integer literals are decimal or hexadecimal (`0x1F`) and must fit in a signed 64-bit
//!   long; a leading zero does not mean octal. Approximate literals (`1.5`, `7.`, `.5`,
//!   `1.5E3`, `2e-3`) are doubles. No type suffixes (`L`, `F`, `D`).
//! - The empty selector (or only whitespace) selects every message, as JMS specifies.
//!
//! # Identifiers
//!
//! Identifiers follow Java's rules (a letter, `_` or `$`, then letters, digits, `_` or `$`),
//! are case-sensitive, and may not be keywords. Three extensions make AMQP names reachable:
//!
//! - `.` may appear after the first character, since AMQP property names such as
//!   `color.shade` and the `amqp.annotation.` prefix use it;
//! - inside an identifier that starts with `amqp.annotation.`, `-` is part of the name too,
//!   because annotation keys are conventionally `x-opt-…`; put spaces around a minus that is
//!   meant as subtraction there;
//! - any name at all can be written in double quotes, with `""` for a quote inside
//!   (`"order-id" = 'x'`); JMS gives double quotes no meaning, so nothing clashes.
//!
//! # Limits
//!
//! Selectors come from peers, so [`Selector::parse`] bounds the text ([`MAX_SELECTOR_LEN`]),
//! the nesting of parentheses and unary operators ([`MAX_DEPTH`], which keeps both the parser
//! and the evaluator off the end of the stack), and `IN` lists ([`MAX_IN_ITEMS`]). Chains of
//! `AND`, `OR`, `+` or `*` are kept as flat lists, so their length adds no depth. `LIKE`
//! matching never backtracks exponentially: it is linear for patterns made of literal text
//! and `%`, and O(text × pattern) at worst when `_` is involved.

// Everything here handles peer input: no panicking paths.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::str::FromStr;

use bytes::Bytes;
use ferry_codec::codes as c;
use ferry_codec::decode::SymbolRef;
use ferry_codec::messaging::{Header, MessageId, Properties, Span};
use ferry_codec::types::Value;
use ferry_codec::{Decoder, Message};

/// The descriptor name of the filter that carries a selector.
pub const FILTER_NAME: &str = "apache.org:selector-filter:string";

/// The descriptor code of the filter that carries a selector.
pub const FILTER_CODE: u64 = 0x0000_468C_0000_0004;

/// Longest selector accepted, in bytes.
pub const MAX_SELECTOR_LEN: usize = 4096;

/// Deepest nesting of parentheses, `NOT` and unary signs accepted.
pub const MAX_DEPTH: usize = 64;

/// Most items in one `IN` list.
pub const MAX_IN_ITEMS: usize = 1024;

/// The prefix that names a message annotation instead of an application property.
pub const ANNOTATION_PREFIX: &str = "amqp.annotation.";

/// Why a selector could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector at byte {position}: {message}")]
pub struct SelectorError {
    /// Byte offset into the selector text where the problem was found.
    pub position: usize,
    /// What is wrong.
    pub message: Cow<'static, str>,
}

fn error(position: usize, message: impl Into<Cow<'static, str>>) -> SelectorError {
    SelectorError {
        position,
        message: message.into(),
    }
}

/// A value an identifier can have. Strings borrow where they can, so looking a property up
/// in a decoded message allocates nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum SelectorValue<'a> {
    /// A boolean.
    Bool(bool),
    /// An exact number (every AMQP integer type that fits).
    Long(i64),
    /// An approximate number.
    Double(f64),
    /// A string.
    String(Cow<'a, str>),
}

impl SelectorValue<'_> {
    /// The same value, borrowing its string instead of owning it.
    pub fn reborrow(&self) -> SelectorValue<'_> {
        match self {
            SelectorValue::Bool(b) => SelectorValue::Bool(*b),
            SelectorValue::Long(v) => SelectorValue::Long(*v),
            SelectorValue::Double(v) => SelectorValue::Double(*v),
            SelectorValue::String(s) => SelectorValue::String(Cow::Borrowed(s)),
        }
    }

    /// The selector view of an AMQP value: integers become longs (a `ulong` above
    /// `i64::MAX` an approximate double), floats doubles, strings and symbols strings,
    /// timestamps their milliseconds; other types have no selector value.
    pub fn from_amqp(value: &Value) -> Option<SelectorValue<'_>> {
        Some(match *value {
            Value::Bool(b) => SelectorValue::Bool(b),
            Value::Ubyte(v) => SelectorValue::Long(i64::from(v)),
            Value::Ushort(v) => SelectorValue::Long(i64::from(v)),
            Value::Uint(v) => SelectorValue::Long(i64::from(v)),
            Value::Ulong(v) => match i64::try_from(v) {
                Ok(v) => SelectorValue::Long(v),
                Err(_) => SelectorValue::Double(v as f64),
            },
            Value::Byte(v) => SelectorValue::Long(i64::from(v)),
            Value::Short(v) => SelectorValue::Long(i64::from(v)),
            Value::Int(v) => SelectorValue::Long(i64::from(v)),
            Value::Long(v) => SelectorValue::Long(v),
            Value::Float(v) => SelectorValue::Double(f64::from(v)),
            Value::Double(v) => SelectorValue::Double(v),
            Value::Timestamp(t) => SelectorValue::Long(t.0),
            Value::String(ref s) => SelectorValue::String(Cow::Borrowed(s.as_str())),
            Value::Symbol(ref s) => SelectorValue::String(Cow::Borrowed(s.as_str())),
            _ => return None,
        })
    }

    /// The same value owning its string, free of any borrow.
    pub fn into_owned(self) -> SelectorValue<'static> {
        match self {
            SelectorValue::Bool(b) => SelectorValue::Bool(b),
            SelectorValue::Long(v) => SelectorValue::Long(v),
            SelectorValue::Double(v) => SelectorValue::Double(v),
            SelectorValue::String(s) => SelectorValue::String(Cow::Owned(s.into_owned())),
        }
    }
}

impl From<bool> for SelectorValue<'_> {
    fn from(v: bool) -> Self {
        SelectorValue::Bool(v)
    }
}

impl From<i64> for SelectorValue<'_> {
    fn from(v: i64) -> Self {
        SelectorValue::Long(v)
    }
}

impl From<f64> for SelectorValue<'_> {
    fn from(v: f64) -> Self {
        SelectorValue::Double(v)
    }
}

impl<'a> From<&'a str> for SelectorValue<'a> {
    fn from(v: &'a str) -> Self {
        SelectorValue::String(Cow::Borrowed(v))
    }
}

impl From<String> for SelectorValue<'_> {
    fn from(v: String) -> Self {
        SelectorValue::String(Cow::Owned(v))
    }
}

/// Looks identifiers up for a selector. `None` means the identifier is not set (NULL).
pub trait Fields {
    /// The value of `identifier`, if it has one a selector can use.
    fn get(&self, identifier: &str) -> Option<SelectorValue<'_>>;
}

impl Fields for HashMap<String, SelectorValue<'_>> {
    fn get(&self, identifier: &str) -> Option<SelectorValue<'_>> {
        HashMap::get(self, identifier).map(SelectorValue::reborrow)
    }
}

/// A compiled selector.
#[derive(Debug, Clone)]
pub struct Selector {
    text: Box<str>,
    /// `None` for the empty selector, which selects everything.
    expr: Option<Expr>,
}

impl Selector {
    /// Compiles `text`.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        if text.len() > MAX_SELECTOR_LEN {
            return Err(error(
                MAX_SELECTOR_LEN,
                format!("selector longer than {MAX_SELECTOR_LEN} bytes"),
            ));
        }
        let tokens = lex(text)?;
        let expr = if tokens.is_empty() {
            None
        } else {
            let mut p = Parser {
                tokens: tokens.into_iter().peekable(),
                end: text.len(),
                depth: 0,
            };
            let start = p.pos();
            let expr = p.parse_or()?;
            if let Some((tok, pos)) = p.tokens.next() {
                return Err(error(pos, format!("unexpected {}", tok.describe())));
            }
            check_bool(&expr, start)?;
            Some(expr)
        };
        Ok(Selector {
            text: text.into(),
            expr,
        })
    }

    /// Whether the message selects: TRUE only (FALSE and UNKNOWN do not).
    pub fn matches(&self, fields: &dyn Fields) -> bool {
        self.evaluate(fields) == Some(true)
    }

    /// The three-valued result: `None` is UNKNOWN.
    pub fn evaluate(&self, fields: &dyn Fields) -> Option<bool> {
        match &self.expr {
            Some(e) => e.truth(fields),
            None => Some(true),
        }
    }

    /// Whether `message` selects; decodes only the sections the selector reads.
    pub fn matches_message(&self, message: &Message) -> bool {
        self.expr.is_none() || self.matches(&MessageFields::new(message))
    }

    /// Whether this selector selects every message (it is empty), so filtering can be
    /// skipped altogether.
    pub fn selects_all(&self) -> bool {
        self.expr.is_none()
    }

    /// The text it was compiled from.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

// ---------------------------------------------------------------------------------------------
// Lexing
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(Box<str>),
    Str(Box<str>),
    /// An integer literal; at most 2^63, which only a unary minus can make valid.
    Int(u64),
    Float(f64),
    True,
    False,
    Null,
    And,
    Or,
    Not,
    Like,
    Escape,
    In,
    Between,
    Is,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
    Star,
    Slash,
    LParen,
    RParen,
    Comma,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(name) => format!("identifier {name:?}"),
            Tok::Str(s) => format!("string literal {s:?}"),
            Tok::Int(v) => format!("number {v}"),
            Tok::Float(v) => format!("number {v}"),
            Tok::True => "TRUE".into(),
            Tok::False => "FALSE".into(),
            Tok::Null => "NULL".into(),
            Tok::And => "AND".into(),
            Tok::Or => "OR".into(),
            Tok::Not => "NOT".into(),
            Tok::Like => "LIKE".into(),
            Tok::Escape => "ESCAPE".into(),
            Tok::In => "IN".into(),
            Tok::Between => "BETWEEN".into(),
            Tok::Is => "IS".into(),
            Tok::Eq => "'='".into(),
            Tok::Ne => "'<>'".into(),
            Tok::Lt => "'<'".into(),
            Tok::Le => "'<='".into(),
            Tok::Gt => "'>'".into(),
            Tok::Ge => "'>='".into(),
            Tok::Plus => "'+'".into(),
            Tok::Minus => "'-'".into(),
            Tok::Star => "'*'".into(),
            Tok::Slash => "'/'".into(),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::Comma => "','".into(),
        }
    }
}

/// 2^63: the magnitude of `i64::MIN`, a valid literal only after a minus sign.
const LONG_MIN_MAGNITUDE: u64 = 1 << 63;

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '$'
}

fn is_ident_part(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || c == '.'
}

fn keyword(word: &str) -> Option<Tok> {
    const KEYWORDS: [(&str, Tok); 11] = [
        ("AND", Tok::And),
        ("OR", Tok::Or),
        ("NOT", Tok::Not),
        ("LIKE", Tok::Like),
        ("ESCAPE", Tok::Escape),
        ("IN", Tok::In),
        ("BETWEEN", Tok::Between),
        ("IS", Tok::Is),
        ("NULL", Tok::Null),
        ("TRUE", Tok::True),
        ("FALSE", Tok::False),
    ];
    KEYWORDS
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(word))
        .map(|(_, t)| t.clone())
}

/// Splits `text` into tokens, each with its byte offset.
fn lex(text: &str) -> Result<Vec<(Tok, usize)>, SelectorError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(rest) = text.get(pos..) {
        let mut chars = rest.chars();
        let Some(c) = chars.next() else { break };
        if c.is_ascii_whitespace() {
            pos += 1;
            continue;
        }
        let next = chars.next();
        let (tok, len) = match c {
            '(' => (Tok::LParen, 1),
            ')' => (Tok::RParen, 1),
            ',' => (Tok::Comma, 1),
            '+' => (Tok::Plus, 1),
            '-' => (Tok::Minus, 1),
            '*' => (Tok::Star, 1),
            '/' => (Tok::Slash, 1),
            '=' => (Tok::Eq, 1),
            '<' => match next {
                Some('>') => (Tok::Ne, 2),
                Some('=') => (Tok::Le, 2),
                _ => (Tok::Lt, 1),
            },
            '>' => match next {
                Some('=') => (Tok::Ge, 2),
                _ => (Tok::Gt, 1),
            },
            '\'' => {
                let (s, len) = lex_quoted(rest, '\'', pos, "string literal")?;
                (Tok::Str(s.into()), len)
            }
            '"' => {
                let (s, len) = lex_quoted(rest, '"', pos, "quoted identifier")?;
                if s.is_empty() {
                    return Err(error(pos, "empty quoted identifier"));
                }
                (Tok::Ident(s.into()), len)
            }
            '0'..='9' => lex_number(rest, pos)?,
            '.' if next.is_some_and(|n| n.is_ascii_digit()) => lex_number(rest, pos)?,
            c if is_ident_start(c) => lex_word(rest),
            c => return Err(error(pos, format!("unexpected character {c:?}"))),
        };
        out.push((tok, pos));
        pos += len;
    }
    Ok(out)
}

/// A literal delimited by `quote`, which is doubled to stand for itself.
fn lex_quoted(
    rest: &str,
    quote: char,
    pos: usize,
    what: &'static str,
) -> Result<(String, usize), SelectorError> {
    let mut out = String::new();
    let mut chars = rest.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        if c != quote {
            out.push(c);
        } else if chars.peek().is_some_and(|&(_, n)| n == quote) {
            out.push(quote);
            chars.next();
        } else {
            return Ok((out, i + c.len_utf8()));
        }
    }
    Err(error(pos, format!("unterminated {what}")))
}

fn lex_number(rest: &str, pos: usize) -> Result<(Tok, usize), SelectorError> {
    let bytes = rest.as_bytes();
    let digits_from = |from: usize| {
        bytes
            .get(from..)
            .map_or(0, |b| b.iter().take_while(|b| b.is_ascii_digit()).count())
    };
    let (tok, len) = if let Some(hex) = rest.strip_prefix("0x").or_else(|| rest.strip_prefix("0X"))
    {
        let n = hex.bytes().take_while(u8::is_ascii_hexdigit).count();
        let digits = hex.get(..n).unwrap_or_default();
        if digits.is_empty() {
            return Err(error(pos, "hexadecimal literal without digits"));
        }
        match i64::from_str_radix(digits, 16) {
            Ok(v) => (Tok::Int(v.unsigned_abs()), 2 + n),
            Err(_) => return Err(error(pos, "integer literal out of range")),
        }
    } else {
        let int_len = digits_from(0);
        let mut len = int_len;
        let mut frac_len = 0;
        let mut exponent = None;
        let mut float = false;
        if bytes.get(len) == Some(&b'.') {
            float = true;
            frac_len = digits_from(len + 1);
            len += 1 + frac_len;
        }
        if matches!(bytes.get(len), Some(b'e' | b'E')) {
            float = true;
            let sign = usize::from(matches!(bytes.get(len + 1), Some(b'+' | b'-')));
            let exp_len = digits_from(len + 1 + sign);
            if exp_len == 0 {
                return Err(error(pos + len, "exponent without digits"));
            }
            exponent = rest.get(len + 1..len + 1 + sign + exp_len);
            len += 1 + sign + exp_len;
        }
        let tok = if float {
            // Rebuilt as `int.frac e exp` so `7.` and `.5` parse the same way everywhere.
            let int = rest.get(..int_len).filter(|s| !s.is_empty()).unwrap_or("0");
            let frac = rest
                .get(int_len + 1..int_len + 1 + frac_len)
                .filter(|s| !s.is_empty())
                .unwrap_or("0");
            let normal = format!("{int}.{frac}e{}", exponent.unwrap_or("0"));
            match normal.parse::<f64>() {
                Ok(v) if v.is_finite() => Tok::Float(v),
                _ => return Err(error(pos, "number out of range")),
            }
        } else {
            match rest.get(..int_len).and_then(|d| d.parse::<u64>().ok()) {
                Some(v) if v <= LONG_MIN_MAGNITUDE => Tok::Int(v),
                _ => return Err(error(pos, "integer literal out of range")),
            }
        };
        (tok, len)
    };
    // `12abc` or `1.2.3` is a typo, not a number followed by an identifier.
    if rest
        .get(len..)
        .and_then(|r| r.chars().next())
        .is_some_and(is_ident_part)
    {
        return Err(error(pos, "malformed number"));
    }
    Ok((tok, len))
}

fn lex_word(rest: &str) -> (Tok, usize) {
    let mut len = 0;
    for c in rest.chars() {
        let annotation_dash = c == '-'
            && rest
                .get(..len)
                .is_some_and(|w| w.starts_with(ANNOTATION_PREFIX));
        if !is_ident_part(c) && !annotation_dash {
            break;
        }
        len += c.len_utf8();
    }
    let word = rest.get(..len).unwrap_or_default();
    (
        keyword(word).unwrap_or_else(|| Tok::Ident(word.into())),
        len,
    )
}

// ---------------------------------------------------------------------------------------------
// The tree
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone)]
enum Literal {
    Bool(bool),
    Long(i64),
    Double(f64),
    Str(Box<str>),
}

#[derive(Debug, Clone)]
enum Expr {
    Literal(Literal),
    Ident(Box<str>),
    /// Unary minus (`negate`) or plus; both require a number.
    Sign {
        negate: bool,
        operand: Box<Expr>,
    },
    /// `first op1 e1 op2 e2 …`, left to right: one node for a whole chain, however long.
    Arith {
        first: Box<Expr>,
        rest: Vec<(ArithOp, Expr)>,
    },
    Compare {
        op: CmpOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Between {
        negated: bool,
        value: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
    },
    In {
        negated: bool,
        value: Box<Expr>,
        list: InList,
    },
    Like {
        negated: bool,
        value: Box<Expr>,
        pattern: Like,
    },
    IsNull {
        negated: bool,
        value: Box<Expr>,
    },
}

/// What an expression is known to produce before any message is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Number,
    String,
    /// An identifier: anything.
    Any,
}

impl Expr {
    fn kind(&self) -> Kind {
        match self {
            Expr::Literal(Literal::Bool(_)) => Kind::Bool,
            Expr::Literal(Literal::Long(_) | Literal::Double(_)) => Kind::Number,
            Expr::Literal(Literal::Str(_)) => Kind::String,
            Expr::Ident(_) => Kind::Any,
            Expr::Sign { .. } | Expr::Arith { .. } => Kind::Number,
            _ => Kind::Bool,
        }
    }
}

fn check_bool(e: &Expr, pos: usize) -> Result<(), SelectorError> {
    match e.kind() {
        Kind::Bool | Kind::Any => Ok(()),
        _ => Err(error(
            pos,
            "expected a condition, found a non-boolean value",
        )),
    }
}

fn check_number(e: &Expr, pos: usize) -> Result<(), SelectorError> {
    match e.kind() {
        Kind::Number | Kind::Any => Ok(()),
        _ => Err(error(pos, "expected a number")),
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

struct Parser {
    tokens: std::iter::Peekable<std::vec::IntoIter<(Tok, usize)>>,
    /// The text length: where "unexpected end" is reported.
    end: usize,
    depth: usize,
}

type Parsed = Result<Expr, SelectorError>;

impl Parser {
    fn peek(&mut self) -> Option<&Tok> {
        self.tokens.peek().map(|(t, _)| t)
    }

    fn pos(&mut self) -> usize {
        let end = self.end;
        self.tokens.peek().map_or(end, |&(_, p)| p)
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        self.tokens.next_if(|(t, _)| t == tok).is_some()
    }

    fn expect(&mut self, tok: &Tok, what: &str) -> Result<(), SelectorError> {
        if self.eat(tok) {
            return Ok(());
        }
        Err(self.unexpected(what))
    }

    fn unexpected(&mut self, wanted: &str) -> SelectorError {
        match self.tokens.peek() {
            Some((tok, pos)) => error(*pos, format!("expected {wanted}, found {}", tok.describe())),
            None => error(
                self.end,
                format!("expected {wanted}, found end of selector"),
            ),
        }
    }

    fn enter(&mut self, pos: usize) -> Result<(), SelectorError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(error(pos, format!("nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn parse_or(&mut self) -> Parsed {
        self.parse_logical(Tok::Or, Self::parse_and, Expr::Or)
    }

    fn parse_and(&mut self) -> Parsed {
        self.parse_logical(Tok::And, Self::parse_not, Expr::And)
    }

    fn parse_logical(
        &mut self,
        op: Tok,
        operand: fn(&mut Self) -> Parsed,
        build: fn(Vec<Expr>) -> Expr,
    ) -> Parsed {
        let start = self.pos();
        let first = operand(self)?;
        if self.peek() != Some(&op) {
            return Ok(first);
        }
        check_bool(&first, start)?;
        let mut items = vec![first];
        while self.eat(&op) {
            let pos = self.pos();
            let e = operand(self)?;
            check_bool(&e, pos)?;
            items.push(e);
        }
        Ok(build(items))
    }

    fn parse_not(&mut self) -> Parsed {
        let pos = self.pos();
        if !self.eat(&Tok::Not) {
            return self.parse_comparison();
        }
        self.enter(pos)?;
        let operand_pos = self.pos();
        let e = self.parse_not()?;
        self.leave();
        check_bool(&e, operand_pos)?;
        Ok(Expr::Not(Box::new(e)))
    }

    fn parse_comparison(&mut self) -> Parsed {
        let start = self.pos();
        let lhs = self.parse_additive()?;
        let op = match self.peek() {
            Some(Tok::Eq) => CmpOp::Eq,
            Some(Tok::Ne) => CmpOp::Ne,
            Some(Tok::Lt) => CmpOp::Lt,
            Some(Tok::Le) => CmpOp::Le,
            Some(Tok::Gt) => CmpOp::Gt,
            Some(Tok::Ge) => CmpOp::Ge,
            Some(Tok::Is) => {
                self.tokens.next();
                let negated = self.eat(&Tok::Not);
                self.expect(&Tok::Null, "NULL")?;
                return Ok(Expr::IsNull {
                    negated,
                    value: Box::new(lhs),
                });
            }
            Some(Tok::Not) => {
                self.tokens.next();
                return match self.peek() {
                    Some(Tok::Like | Tok::In | Tok::Between) => {
                        self.parse_predicate(lhs, start, true)
                    }
                    _ => Err(self.unexpected("LIKE, IN or BETWEEN after NOT")),
                };
            }
            Some(Tok::Like | Tok::In | Tok::Between) => {
                return self.parse_predicate(lhs, start, false);
            }
            _ => return Ok(lhs),
        };
        self.tokens.next();
        let rhs_pos = self.pos();
        let rhs = self.parse_additive()?;
        if !matches!(op, CmpOp::Eq | CmpOp::Ne) {
            for (e, pos) in [(&lhs, start), (&rhs, rhs_pos)] {
                if matches!(e.kind(), Kind::String | Kind::Bool) {
                    return Err(error(
                        pos,
                        "strings and booleans compare only with = and <>",
                    ));
                }
            }
        }
        Ok(Expr::Compare {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        })
    }

    /// `LIKE`, `IN` or `BETWEEN` after `value` (and `NOT`, if `negated`).
    fn parse_predicate(&mut self, value: Expr, value_pos: usize, negated: bool) -> Parsed {
        let value = Box::new(value);
        match self.tokens.next() {
            Some((Tok::Like, _)) => {
                if !matches!(value.kind(), Kind::String | Kind::Any) {
                    return Err(error(value_pos, "LIKE applies only to strings"));
                }
                let pattern_pos = self.pos();
                let Some(Tok::Str(pattern)) = self
                    .tokens
                    .next_if(|(t, _)| matches!(t, Tok::Str(_)))
                    .map(|(t, _)| t)
                else {
                    return Err(self.unexpected("a string literal pattern after LIKE"));
                };
                let mut escape = None;
                if self.eat(&Tok::Escape) {
                    let escape_pos = self.pos();
                    match self.tokens.next() {
                        Some((Tok::Str(s), _)) => {
                            let mut chars = s.chars();
                            match (chars.next(), chars.next()) {
                                (Some(c), None) => escape = Some(c),
                                _ => {
                                    return Err(error(
                                        escape_pos,
                                        "ESCAPE needs a string of exactly one character",
                                    ));
                                }
                            }
                        }
                        _ => {
                            return Err(error(
                                escape_pos,
                                "ESCAPE needs a string of exactly one character",
                            ));
                        }
                    }
                }
                let pattern = Like::compile(&pattern, escape).ok_or_else(|| {
                    error(pattern_pos, "LIKE pattern ends with its escape character")
                })?;
                Ok(Expr::Like {
                    negated,
                    value,
                    pattern,
                })
            }
            Some((Tok::In, _)) => {
                if value.kind() == Kind::Bool {
                    return Err(error(value_pos, "IN applies only to strings and numbers"));
                }
                let list = self.parse_in_list()?;
                Ok(Expr::In {
                    negated,
                    value,
                    list,
                })
            }
            Some((Tok::Between, _)) => {
                check_number(&value, value_pos)?;
                let low_pos = self.pos();
                let low = self.parse_additive()?;
                check_number(&low, low_pos)?;
                self.expect(&Tok::And, "AND in BETWEEN")?;
                let high_pos = self.pos();
                let high = self.parse_additive()?;
                check_number(&high, high_pos)?;
                Ok(Expr::Between {
                    negated,
                    value,
                    low: Box::new(low),
                    high: Box::new(high),
                })
            }
            _ => Err(error(value_pos, "expected LIKE, IN or BETWEEN")),
        }
    }

    fn parse_in_list(&mut self) -> Result<InList, SelectorError> {
        self.expect(&Tok::LParen, "'(' after IN")?;
        let mut strings = Vec::new();
        let mut numbers = Vec::new();
        loop {
            let pos = self.pos();
            if strings.len() + numbers.len() >= MAX_IN_ITEMS {
                return Err(error(
                    pos,
                    format!("IN list longer than {MAX_IN_ITEMS} items"),
                ));
            }
            match self.peek() {
                Some(Tok::Str(_)) => {
                    if let Some((Tok::Str(s), _)) = self.tokens.next() {
                        strings.push(s);
                    }
                }
                Some(Tok::Int(_) | Tok::Float(_) | Tok::Plus | Tok::Minus) => {
                    match self.parse_signed_number()? {
                        Literal::Long(v) => numbers.push(Number::Long(v)),
                        Literal::Double(v) => numbers.push(Number::Double(v)),
                        _ => return Err(error(pos, "expected a literal in the IN list")),
                    }
                }
                _ => return Err(self.unexpected("a string or number literal in the IN list")),
            }
            if self.eat(&Tok::RParen) {
                break;
            }
            self.expect(&Tok::Comma, "',' or ')' in the IN list")?;
        }
        strings.sort_unstable();
        strings.dedup();
        Ok(InList { strings, numbers })
    }

    /// A numeric literal with an optional sign (inside `IN` lists).
    fn parse_signed_number(&mut self) -> Result<Literal, SelectorError> {
        let pos = self.pos();
        let negate = if self.eat(&Tok::Minus) {
            true
        } else {
            self.eat(&Tok::Plus);
            false
        };
        match self.tokens.next() {
            Some((Tok::Int(v), _)) => long_literal(v, negate, pos).map(Literal::Long),
            Some((Tok::Float(v), _)) => Ok(Literal::Double(if negate { -v } else { v })),
            Some((tok, p)) => Err(error(
                p,
                format!("expected a number, found {}", tok.describe()),
            )),
            None => Err(error(self.end, "expected a number, found end of selector")),
        }
    }

    fn parse_additive(&mut self) -> Parsed {
        self.parse_chain(Self::parse_multiplicative, |t| match t {
            Tok::Plus => Some(ArithOp::Add),
            Tok::Minus => Some(ArithOp::Sub),
            _ => None,
        })
    }

    fn parse_multiplicative(&mut self) -> Parsed {
        self.parse_chain(Self::parse_unary, |t| match t {
            Tok::Star => Some(ArithOp::Mul),
            Tok::Slash => Some(ArithOp::Div),
            _ => None,
        })
    }

    fn parse_chain(
        &mut self,
        operand: fn(&mut Self) -> Parsed,
        operator: fn(&Tok) -> Option<ArithOp>,
    ) -> Parsed {
        let start = self.pos();
        let first = operand(self)?;
        let mut rest = Vec::new();
        while let Some(op) = self.peek().and_then(operator) {
            self.tokens.next();
            let pos = self.pos();
            let e = operand(self)?;
            check_number(&e, pos)?;
            rest.push((op, e));
        }
        if rest.is_empty() {
            return Ok(first);
        }
        check_number(&first, start)?;
        Ok(Expr::Arith {
            first: Box::new(first),
            rest,
        })
    }

    fn parse_unary(&mut self) -> Parsed {
        let pos = self.pos();
        let negate = match self.peek() {
            Some(Tok::Minus) => true,
            Some(Tok::Plus) => false,
            _ => return self.parse_primary(),
        };
        self.tokens.next();
        // A signed literal is folded here, which is also what lets `-9223372036854775808`
        // through: its magnitude alone does not fit in a long.
        if let Some(&(Tok::Int(v), _)) = self.tokens.peek() {
            self.tokens.next();
            return long_literal(v, negate, pos).map(|v| Expr::Literal(Literal::Long(v)));
        }
        if let Some(&(Tok::Float(v), _)) = self.tokens.peek() {
            self.tokens.next();
            return Ok(Expr::Literal(Literal::Double(if negate { -v } else { v })));
        }
        self.enter(pos)?;
        let operand_pos = self.pos();
        let operand = self.parse_unary()?;
        self.leave();
        check_number(&operand, operand_pos)?;
        Ok(match operand {
            Expr::Literal(Literal::Long(v)) if negate => match v.checked_neg() {
                Some(v) => Expr::Literal(Literal::Long(v)),
                None => return Err(error(pos, "integer literal out of range")),
            },
            Expr::Literal(Literal::Double(v)) if negate => Expr::Literal(Literal::Double(-v)),
            e @ Expr::Literal(_) => e,
            e => Expr::Sign {
                negate,
                operand: Box::new(e),
            },
        })
    }

    fn parse_primary(&mut self) -> Parsed {
        let Some((tok, pos)) = self.tokens.next() else {
            return Err(error(self.end, "expected a value, found end of selector"));
        };
        Ok(match tok {
            Tok::LParen => {
                self.enter(pos)?;
                let e = self.parse_or()?;
                self.leave();
                self.expect(&Tok::RParen, "')'")?;
                e
            }
            Tok::Ident(name) => Expr::Ident(name),
            Tok::Str(s) => Expr::Literal(Literal::Str(s)),
            Tok::Int(v) => Expr::Literal(Literal::Long(long_literal(v, false, pos)?)),
            Tok::Float(v) => Expr::Literal(Literal::Double(v)),
            Tok::True => Expr::Literal(Literal::Bool(true)),
            Tok::False => Expr::Literal(Literal::Bool(false)),
            Tok::Null => return Err(error(pos, "NULL is allowed only in IS [NOT] NULL")),
            tok => {
                return Err(error(
                    pos,
                    format!("expected a value, found {}", tok.describe()),
                ));
            }
        })
    }
}

fn long_literal(magnitude: u64, negate: bool, pos: usize) -> Result<i64, SelectorError> {
    if negate && magnitude == LONG_MIN_MAGNITUDE {
        return Ok(i64::MIN);
    }
    match i64::try_from(magnitude) {
        Ok(v) if negate => Ok(-v),
        Ok(v) => Ok(v),
        Err(_) => Err(error(pos, "integer literal out of range")),
    }
}

// ---------------------------------------------------------------------------------------------
// IN and LIKE
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Number {
    Long(i64),
    Double(f64),
}

impl Number {
    fn of(v: &SelectorValue<'_>) -> Option<Number> {
        match *v {
            SelectorValue::Long(v) => Some(Number::Long(v)),
            SelectorValue::Double(v) => Some(Number::Double(v)),
            _ => None,
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Number::Long(v) => v as f64,
            Number::Double(v) => v,
        }
    }

    fn into_value(self) -> SelectorValue<'static> {
        match self {
            Number::Long(v) => SelectorValue::Long(v),
            Number::Double(v) => SelectorValue::Double(v),
        }
    }
}

/// An `IN` list, split by type: strings sorted for binary search.
#[derive(Debug, Clone)]
struct InList {
    strings: Vec<Box<str>>,
    numbers: Vec<Number>,
}

impl InList {
    /// `value = item1 OR value = item2 …` in three-valued logic: an item of another type
    /// compares UNKNOWN, so without a match its presence makes the result UNKNOWN.
    fn contains(&self, value: &SelectorValue<'_>) -> Option<bool> {
        let (found, others) = match value {
            SelectorValue::String(s) => (
                self.strings.binary_search_by(|i| (**i).cmp(s)).is_ok(),
                !self.numbers.is_empty(),
            ),
            SelectorValue::Long(_) | SelectorValue::Double(_) => {
                let v = Number::of(value)?;
                (
                    self.numbers
                        .iter()
                        .any(|&n| compare_numbers(CmpOp::Eq, v, n)),
                    !self.strings.is_empty(),
                )
            }
            SelectorValue::Bool(_) => return None,
        };
        if found {
            Some(true)
        } else if others {
            None
        } else {
            Some(false)
        }
    }
}

/// A run of pattern characters between `%`s; `None` is `_`.
#[derive(Debug, Clone)]
struct Segment {
    chars: Vec<Option<char>>,
    /// The run as text when it has no `_`: matched with plain string search.
    literal: Option<Box<str>>,
}

impl Segment {
    fn new(chars: Vec<Option<char>>) -> Self {
        let literal = chars
            .iter()
            .copied()
            .collect::<Option<String>>()
            .map(Into::into);
        Segment { chars, literal }
    }

    /// What is left of `s` after this segment matched at its start.
    fn strip_front<'s>(&self, s: &'s str) -> Option<&'s str> {
        if let Some(lit) = &self.literal {
            return s.strip_prefix(&**lit);
        }
        let mut it = s.chars();
        for want in &self.chars {
            let c = it.next()?;
            if want.is_some_and(|w| w != c) {
                return None;
            }
        }
        Some(it.as_str())
    }

    /// What is left of `s` after this segment matched at its end.
    fn strip_back<'s>(&self, s: &'s str) -> Option<&'s str> {
        if let Some(lit) = &self.literal {
            return s.strip_suffix(&**lit);
        }
        let mut it = s.chars();
        for want in self.chars.iter().rev() {
            let c = it.next_back()?;
            if want.is_some_and(|w| w != c) {
                return None;
            }
        }
        Some(it.as_str())
    }

    /// What is left of `s` after the leftmost match of this segment.
    fn strip_through<'s>(&self, s: &'s str) -> Option<&'s str> {
        if let Some(lit) = &self.literal {
            let at = s.find(&**lit)?;
            return s.get(at + lit.len()..);
        }
        let mut rest = s;
        loop {
            if let Some(after) = self.strip_front(rest) {
                return Some(after);
            }
            let mut it = rest.chars();
            it.next()?;
            rest = it.as_str();
        }
    }
}

/// A compiled `LIKE` pattern.
///
/// Split at `%` into segments, a match is: the first segment at the start, the last at the
/// end, and each one between at its leftmost place after the previous. Leftmost is always
/// right, because the `%` after it can absorb whatever a later placement would have skipped,
/// so nothing is ever retried and the cost stays polynomial.
#[derive(Debug, Clone)]
enum Like {
    /// No `%`: the whole value must match.
    Exact(Segment),
    Wild {
        prefix: Segment,
        middle: Vec<Segment>,
        suffix: Segment,
    },
}

impl Like {
    /// `None` if the pattern ends with the escape character.
    fn compile(pattern: &str, escape: Option<char>) -> Option<Like> {
        let mut segments = Vec::new();
        let mut current = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            match c {
                c if Some(c) == escape => current.push(Some(chars.next()?)),
                '%' => segments.push(Segment::new(std::mem::take(&mut current))),
                '_' => current.push(None),
                c => current.push(Some(c)),
            }
        }
        let last = Segment::new(current);
        if segments.is_empty() {
            return Some(Like::Exact(last));
        }
        let mut segments = segments.into_iter();
        let prefix = segments.next().unwrap_or_else(|| Segment::new(Vec::new()));
        Some(Like::Wild {
            prefix,
            middle: segments.filter(|s| !s.chars.is_empty()).collect(),
            suffix: last,
        })
    }

    fn matches(&self, s: &str) -> bool {
        match self {
            Like::Exact(seg) => seg.strip_front(s).is_some_and(str::is_empty),
            Like::Wild {
                prefix,
                middle,
                suffix,
            } => {
                let Some(mut rest) = prefix.strip_front(s).and_then(|r| suffix.strip_back(r))
                else {
                    return false;
                };
                for seg in middle {
                    match seg.strip_through(rest) {
                        Some(r) => rest = r,
                        None => return false,
                    }
                }
                true
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

fn compare_numbers(op: CmpOp, a: Number, b: Number) -> bool {
    if let (Number::Long(a), Number::Long(b)) = (a, b) {
        return match op {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
        };
    }
    let (a, b) = (a.as_f64(), b.as_f64());
    match op {
        CmpOp::Eq => a == b,
        CmpOp::Ne => a != b,
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
    }
}

fn compare(op: CmpOp, l: &SelectorValue<'_>, r: &SelectorValue<'_>) -> Option<bool> {
    use SelectorValue as V;
    let equal = match (l, r) {
        (V::String(a), V::String(b)) => a == b,
        (V::Bool(a), V::Bool(b)) => a == b,
        _ => return Some(compare_numbers(op, Number::of(l)?, Number::of(r)?)),
    };
    match op {
        CmpOp::Eq => Some(equal),
        CmpOp::Ne => Some(!equal),
        _ => None,
    }
}

fn arith(op: ArithOp, a: Number, b: Number) -> Option<Number> {
    if let (Number::Long(a), Number::Long(b)) = (a, b) {
        return match op {
            ArithOp::Add => a.checked_add(b),
            ArithOp::Sub => a.checked_sub(b),
            ArithOp::Mul => a.checked_mul(b),
            ArithOp::Div => a.checked_div(b),
        }
        .map(Number::Long);
    }
    let (a, b) = (a.as_f64(), b.as_f64());
    Some(Number::Double(match op {
        ArithOp::Add => a + b,
        ArithOp::Sub => a - b,
        ArithOp::Mul => a * b,
        ArithOp::Div if b == 0.0 => return None,
        ArithOp::Div => a / b,
    }))
}

impl Expr {
    /// The expression as a condition: `None` is UNKNOWN.
    fn truth(&self, f: &dyn Fields) -> Option<bool> {
        match self {
            Expr::And(items) => {
                let mut unknown = false;
                for e in items {
                    match e.truth(f) {
                        Some(false) => return Some(false),
                        None => unknown = true,
                        Some(true) => {}
                    }
                }
                (!unknown).then_some(true)
            }
            Expr::Or(items) => {
                let mut unknown = false;
                for e in items {
                    match e.truth(f) {
                        Some(true) => return Some(true),
                        None => unknown = true,
                        Some(false) => {}
                    }
                }
                (!unknown).then_some(false)
            }
            Expr::Not(e) => e.truth(f).map(|b| !b),
            Expr::Compare { op, lhs, rhs } => compare(*op, &lhs.value(f)?, &rhs.value(f)?),
            Expr::Between {
                negated,
                value,
                low,
                high,
            } => {
                let v = value.value(f)?;
                let above = low.value(f).and_then(|l| compare(CmpOp::Ge, &v, &l));
                let below = high.value(f).and_then(|h| compare(CmpOp::Le, &v, &h));
                let within = match (above, below) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                };
                within.map(|t| t != *negated)
            }
            Expr::In {
                negated,
                value,
                list,
            } => list.contains(&value.value(f)?).map(|t| t != *negated),
            Expr::Like {
                negated,
                value,
                pattern,
            } => match value.value(f)? {
                SelectorValue::String(s) => Some(pattern.matches(&s) != *negated),
                _ => None,
            },
            Expr::IsNull { negated, value } => Some(value.value(f).is_none() != *negated),
            Expr::Literal(_) | Expr::Ident(_) | Expr::Sign { .. } | Expr::Arith { .. } => {
                match self.value(f)? {
                    SelectorValue::Bool(b) => Some(b),
                    _ => None,
                }
            }
        }
    }

    /// The expression's value: `None` is NULL (or UNKNOWN, for a condition).
    fn value<'a>(&'a self, f: &'a dyn Fields) -> Option<SelectorValue<'a>> {
        match self {
            Expr::Literal(l) => Some(match l {
                Literal::Bool(b) => SelectorValue::Bool(*b),
                Literal::Long(v) => SelectorValue::Long(*v),
                Literal::Double(v) => SelectorValue::Double(*v),
                Literal::Str(s) => SelectorValue::String(Cow::Borrowed(s)),
            }),
            Expr::Ident(name) => f.get(name),
            Expr::Sign { negate, operand } => match Number::of(&operand.value(f)?)? {
                Number::Long(v) if *negate => v.checked_neg().map(SelectorValue::Long),
                Number::Double(v) if *negate => Some(SelectorValue::Double(-v)),
                n => Some(n.into_value()),
            },
            Expr::Arith { first, rest } => {
                let mut acc = Number::of(&first.value(f)?)?;
                for (op, e) in rest {
                    acc = arith(*op, acc, Number::of(&e.value(f)?)?)?;
                }
                Some(acc.into_value())
            }
            _ => self.truth(f).map(SelectorValue::Bool),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// AMQP messages
// ---------------------------------------------------------------------------------------------

/// A message as a selector sees it, following the AMQP JMS mapping.
///
/// Sections are read only when an identifier needs them, and header and properties are
/// decoded once. The two map sections are not decoded into [`Value`]s at all: their pairs
/// are located once and each lookup walks them in place, comparing keys without copying and
/// decoding only the value asked for, with strings borrowed from the message. That keeps a
/// typical selector to well under a microsecond per message. A section that fails to decode
/// reads as absent: its fields are NULL and the selector is UNKNOWN, not an error.
///
/// | identifier | source |
/// |---|---|
/// | `JMSMessageID` | properties `message-id` |
/// | `JMSCorrelationID` | properties `correlation-id` |
/// | `JMSType` | properties `subject` |
/// | `JMSDestination` | properties `to` |
/// | `JMSReplyTo` | properties `reply-to` |
/// | `JMSTimestamp` | properties `creation-time` (ms) |
/// | `JMSExpiration` | properties `absolute-expiry-time` (ms) |
/// | `JMSXGroupID` | properties `group-id` |
/// | `JMSXGroupSeq` | properties `group-sequence` |
/// | `JMSPriority` | header `priority` (4 without a header) |
/// | `JMSDeliveryMode` | `'PERSISTENT'` if header `durable`, else `'NON_PERSISTENT'` |
/// | `JMSXDeliveryCount` | header `delivery-count` + 1 |
/// | `amqp.annotation.<key>` | message annotation with symbol key `<key>` |
/// | anything else | application property of that name |
///
/// Ids are strings as sent, without the `ID:` prefix a JMS client may add or the
/// `AMQP_ULONG:`-style type tags of the mapping: a `ulong` id reads as its decimal digits, a
/// `uuid` in its hyphenated lowercase form and a `binary` id as lowercase hex. Absent
/// properties (no `creation-time`, say) are NULL rather than JMS's 0, so `JMSTimestamp IS
/// NULL` can tell.
#[derive(Debug)]
pub struct MessageFields<'m> {
    message: &'m Message,
    header: OnceCell<Option<Header>>,
    properties: OnceCell<Option<Properties<'m>>>,
    application_properties: OnceCell<Option<RawMap>>,
    annotations: OnceCell<Option<RawMap>>,
}

impl<'m> MessageFields<'m> {
    /// Fields of `message`; nothing is decoded yet.
    pub fn new(message: &'m Message) -> Self {
        MessageFields {
            message,
            header: OnceCell::new(),
            properties: OnceCell::new(),
            application_properties: OnceCell::new(),
            annotations: OnceCell::new(),
        }
    }

    fn header(&self) -> Option<&Header> {
        self.header
            .get_or_init(|| self.message.header().ok())
            .as_ref()
    }

    fn properties(&self) -> Option<&Properties<'m>> {
        self.properties
            .get_or_init(|| self.message.properties().ok().flatten())
            .as_ref()
    }

    fn application_properties(&self) -> Option<&RawMap> {
        self.application_properties
            .get_or_init(|| self.raw_map(self.message.index().application_properties))
            .as_ref()
    }

    fn annotations(&self) -> Option<&RawMap> {
        self.annotations
            .get_or_init(|| self.raw_map(self.message.index().message_annotations))
            .as_ref()
    }

    fn raw_map(&self, span: Option<Span>) -> Option<RawMap> {
        RawMap::locate(self.message.contiguous(span?))
    }

    /// A JMS header field; `None` if `name` is not one (it is then an application property).
    fn jms(&self, name: &str) -> Option<Option<SelectorValue<'_>>> {
        let text = |s: Option<&'m str>| s.map(|s| SelectorValue::String(Cow::Borrowed(s)));
        let props = || self.properties();
        Some(match name {
            "JMSMessageID" => props().and_then(|p| p.message_id).map(id_text),
            "JMSCorrelationID" => props().and_then(|p| p.correlation_id).map(id_text),
            "JMSType" => text(props().and_then(|p| p.subject)),
            "JMSDestination" => text(props().and_then(|p| p.to)),
            "JMSReplyTo" => text(props().and_then(|p| p.reply_to)),
            "JMSXGroupID" => text(props().and_then(|p| p.group_id)),
            "JMSXGroupSeq" => props()
                .and_then(|p| p.group_sequence)
                .map(|v| SelectorValue::Long(i64::from(v))),
            "JMSTimestamp" => props()
                .and_then(|p| p.creation_time)
                .map(|t| SelectorValue::Long(t.0)),
            "JMSExpiration" => props()
                .and_then(|p| p.absolute_expiry_time)
                .map(|t| SelectorValue::Long(t.0)),
            "JMSPriority" => self
                .header()
                .map(|h| SelectorValue::Long(i64::from(h.priority))),
            "JMSDeliveryMode" => self.header().map(|h| {
                SelectorValue::String(Cow::Borrowed(if h.durable {
                    "PERSISTENT"
                } else {
                    "NON_PERSISTENT"
                }))
            }),
            "JMSXDeliveryCount" => self
                .header()
                .map(|h| SelectorValue::Long(i64::from(h.delivery_count) + 1)),
            _ => return None,
        })
    }
}

impl MessageFields<'_> {
    /// An application property by name, whatever JMS or annotation name it looks like.
    pub fn application_property(&self, name: &str) -> Option<SelectorValue<'_>> {
        self.application_properties()?.get(name)
    }
}

impl Fields for MessageFields<'_> {
    fn get(&self, identifier: &str) -> Option<SelectorValue<'_>> {
        if let Some(key) = identifier.strip_prefix(ANNOTATION_PREFIX) {
            return self.annotations()?.get(key);
        }
        if identifier.starts_with("JMS")
            && let Some(v) = self.jms(identifier)
        {
            return v;
        }
        self.application_properties()?.get(identifier)
    }
}

/// The pairs of a map section (application properties, message annotations), searched in
/// place.
#[derive(Debug)]
struct RawMap {
    /// The encoded pairs, without the descriptor and map header.
    pairs: Bytes,
    /// Number of pairs.
    len: u32,
}

impl RawMap {
    /// Finds the pairs in an encoded section (descriptor, then `map8` or `map32`).
    fn locate(section: Bytes) -> Option<RawMap> {
        let mut d = Decoder::new(&section);
        d.descriptor().ok()?;
        let at = d.position();
        let (header, body, count) = match *d.remaining() {
            [c::MAP8, size, count, ..] => (3, usize::from(size).checked_sub(1)?, u32::from(count)),
            [c::MAP32, s0, s1, s2, s3, n0, n1, n2, n3, ..] => (
                9,
                usize::try_from(u32::from_be_bytes([s0, s1, s2, s3]))
                    .ok()?
                    .checked_sub(4)?,
                u32::from_be_bytes([n0, n1, n2, n3]),
            ),
            _ => return None,
        };
        let start = at + header;
        let end = start.checked_add(body)?;
        if count % 2 != 0 || end > section.len() {
            return None;
        }
        Some(RawMap {
            pairs: section.slice(start..end),
            len: count / 2,
        })
    }

    /// The value of the first pair whose key is the string or symbol `key`.
    fn get(&self, key: &str) -> Option<SelectorValue<'_>> {
        let mut d = Decoder::new(&self.pairs);
        for _ in 0..self.len {
            let found = match d.peek_u8().ok()? {
                c::STR8 | c::STR32 => d.read::<&str>().ok()? == key,
                c::SYM8 | c::SYM32 => d.read::<SymbolRef<'_>>().ok()?.0 == key,
                _ => {
                    d.skip_value().ok()?;
                    false
                }
            };
            if found {
                return read_value(&mut d);
            }
            d.skip_value().ok()?;
        }
        None
    }
}

/// The next value as a selector value, its text borrowed from the buffer.
fn read_value<'a>(d: &mut Decoder<'a>) -> Option<SelectorValue<'a>> {
    let text = match d.peek_u8().ok()? {
        c::STR8 | c::STR32 => d.read::<&str>().ok()?,
        c::SYM8 | c::SYM32 => d.read::<SymbolRef<'_>>().ok()?.0,
        _ => return SelectorValue::from_amqp(&d.value().ok()?).map(SelectorValue::into_owned),
    };
    Some(SelectorValue::String(Cow::Borrowed(text)))
}

/// A message or correlation id as the string a selector compares.
fn id_text(id: MessageId<'_>) -> SelectorValue<'_> {
    SelectorValue::String(match id {
        MessageId::String(s) => Cow::Borrowed(s),
        MessageId::Ulong(v) => Cow::Owned(v.to_string()),
        MessageId::Uuid(u) => {
            let mut s = String::with_capacity(36);
            for (i, b) in u.0.iter().enumerate() {
                if matches!(i, 4 | 6 | 8 | 10) {
                    s.push('-');
                }
                let _ = write!(s, "{b:02x}");
            }
            Cow::Owned(s)
        }
        MessageId::Binary(bytes) => {
            let mut s = String::with_capacity(bytes.len() * 2);
            for b in bytes {
                let _ = write!(s, "{b:02x}");
            }
            Cow::Owned(s)
        }
    })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;
    use ferry_codec::messaging::{ApplicationProperties, Data, MessageAnnotations, Section};
    use ferry_codec::types::{Map, Timestamp, Uuid};
    use proptest::prelude::*;

    const T: Option<bool> = Some(true);
    const F: Option<bool> = Some(false);
    const U: Option<bool> = None;

    fn fields() -> HashMap<String, SelectorValue<'static>> {
        let pairs: Vec<(&str, SelectorValue<'static>)> = vec![
            ("color", "red".into()),
            ("size", 12i64.into()),
            ("weight", 2.5.into()),
            ("flag", true.into()),
            ("off", false.into()),
            ("name", "a_b%c".into()),
            ("empty", "".into()),
            ("neg", (-3i64).into()),
            ("big", i64::MAX.into()),
            ("small", i64::MIN.into()),
            ("dzero", 0.0.into()),
            ("nan", f64::NAN.into()),
            ("color.shade", "dark".into()),
            ("ünï", "x".into()),
            ("$x_1", 1i64.into()),
            ("order-id", "o-1".into()),
            ("unicode", "héllo wörld".into()),
            ("quote", "it's".into()),
            ("special", "a.*[b]".into()),
            ("esc", "a!b".into()),
            ("amqp.annotation.x-opt-foo", 7i64.into()),
        ];
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    fn eval_with(sel: &str, f: &dyn Fields) -> Option<bool> {
        Selector::parse(sel)
            .unwrap_or_else(|e| panic!("{sel:?}: {e}"))
            .evaluate(f)
    }

    fn check(cases: &[(&str, Option<bool>)]) {
        let f = fields();
        for &(sel, want) in cases {
            assert_eq!(eval_with(sel, &f), want, "{sel}");
            let s = Selector::parse(sel).unwrap();
            assert_eq!(s.matches(&f), want == T, "{sel}");
        }
    }

    #[test]
    fn comparisons() {
        check(&[
            ("color = 'red'", T),
            ("color <> 'red'", F),
            ("color = 'Red'", F),
            ("'red' = color", T),
            ("size = 12", T),
            ("size <> 12", F),
            ("size > 10", T),
            ("10 < size", T),
            ("size >= 12", T),
            ("size < 12", F),
            ("size <= 11", F),
            ("flag = TRUE", T),
            ("flag <> FALSE", T),
            ("flag = off", F),
            ("flag", T),
            ("off", F),
            ("(size > 10) = TRUE", T),
            ("(missing > 10) = TRUE", U),
            ("missing = 1", U),
            ("missing <> 1", U),
            ("missing = missing", U),
            ("nan = nan", F),
            ("nan <> nan", T),
            ("nan < 1", F),
        ]);
    }

    #[test]
    fn numeric_promotion() {
        check(&[
            ("weight = 2.5", T),
            ("weight > 2", T),
            ("weight < 3", T),
            ("size = 12.0", T),
            ("size > 11.5", T),
            ("size < 12.5", T),
            ("size + weight = 14.5", T),
            ("size * 1.0 = 12", T),
        ]);
    }

    #[test]
    fn type_mismatches_are_unknown() {
        check(&[
            ("color = 5", U),
            ("NOT color = 5", U),
            ("color <> 5", U),
            ("size = '12'", U),
            ("flag = 1", U),
            ("flag = 'true'", U),
            ("color > size", U),
            ("color < missing", U),
            ("flag < off", U),
            ("color", U),
            ("size", U),
            ("NOT color", U),
            ("color AND flag", U),
            ("'a' = 1", U),
        ]);
    }

    #[test]
    fn three_valued_logic() {
        // `flag` is TRUE, `off` FALSE, `missing` UNKNOWN.
        let atoms = [("flag", T), ("off", F), ("missing", U)];
        let and = [[T, F, U], [F, F, F], [U, F, U]];
        let or = [[T, T, T], [T, F, U], [T, U, U]];
        let not = [F, T, U];
        let f = fields();
        for (i, (a, _)) in atoms.iter().enumerate() {
            assert_eq!(eval_with(&format!("NOT {a}"), &f), not[i], "NOT {a}");
            for (j, (b, _)) in atoms.iter().enumerate() {
                assert_eq!(
                    eval_with(&format!("{a} AND {b}"), &f),
                    and[i][j],
                    "{a} AND {b}"
                );
                assert_eq!(
                    eval_with(&format!("{a} OR {b}"), &f),
                    or[i][j],
                    "{a} OR {b}"
                );
            }
        }
        check(&[
            ("flag AND flag AND missing", U),
            ("flag AND missing AND off", F),
            ("off OR missing OR flag", T),
            ("off OR missing OR off", U),
            ("NOT NOT flag", T),
            ("NOT (missing = 1)", U),
            ("NOT missing IS NULL", F),
        ]);
    }

    #[test]
    fn precedence() {
        check(&[
            // AND binds tighter than OR.
            ("flag OR off AND off", T),
            ("(flag OR off) AND off", F),
            ("off AND off OR flag", T),
            // NOT binds tighter than AND.
            ("NOT off AND flag", T),
            ("NOT flag AND flag", F),
            ("NOT (flag AND off)", T),
            // Comparison binds tighter than NOT.
            ("NOT size = 11", T),
            ("NOT size BETWEEN 13 AND 20", T),
            // BETWEEN's AND is not a logical AND.
            ("size BETWEEN 1 AND 20 AND flag", T),
            ("size BETWEEN 1 AND 20 AND off", F),
        ]);
    }

    #[test]
    fn arithmetic() {
        check(&[
            ("size + 3 = 15", T),
            ("size - 2 * 3 = 6", T),
            ("(size - 2) * 3 = 30", T),
            ("2 + 3 * 4 = 14", T),
            ("(2 + 3) * 4 = 20", T),
            ("10 - 3 - 2 = 5", T),
            ("100 / 10 / 5 = 2", T),
            ("size / 5 = 2", T),
            ("size / 5.0 = 2.4", T),
            ("-size = -12", T),
            ("- -size = 12", T),
            ("+size = 12", T),
            ("size * -1 < 0", T),
            ("neg * neg = 9", T),
            ("size-2 = 10", T),
            ("-neg = 3", T),
            ("-weight = -2.5", T),
            // Division by zero, overflow and non-numbers are UNKNOWN.
            ("size / 0 = 1", U),
            ("size / 0 <> 1", U),
            ("size / 0.0 > 1", U),
            ("weight / dzero > 0", U),
            ("big + 1 > 0", U),
            ("small - 1 < 0", U),
            ("big * 2 > 0", U),
            ("small / -1 = 0", U),
            ("-small = 0", U),
            ("color + 1 = 1", U),
            ("flag + 1 = 2", U),
            ("-color = 1", U),
            ("missing + 1 = 1", U),
            ("(missing + 1) IS NULL", T),
            ("(color * 2) IS NULL", T),
            ("(size * 2) IS NOT NULL", T),
        ]);
    }

    #[test]
    fn literals() {
        check(&[
            ("weight = 2.5e0", T),
            ("1.5E3 = 1500", T),
            ("7. = 7", T),
            (".5 = 0.5", T),
            ("2e-1 = 0.2", T),
            ("1E+2 = 100", T),
            ("size = 0xC", T),
            ("size = 0Xc", T),
            ("0012 = size", T),
            ("small = -9223372036854775808", T),
            ("big = 9223372036854775807", T),
            ("big = 0x7FFFFFFFFFFFFFFF", T),
            ("quote = 'it''s'", T),
            ("empty = ''", T),
            ("'''' = ''''", T),
            ("TRUE", T),
            ("FALSE", F),
            ("NOT FALSE", T),
        ]);
    }

    #[test]
    fn keywords_are_case_insensitive() {
        check(&[
            ("color = 'red' and size > 10", T),
            ("color = 'red' AnD NoT off", T),
            ("off oR flag", T),
            ("color like 'r%' escape '!'", T),
            ("color not like 'b%'", T),
            ("size between 1 and 20", T),
            ("size not between 1 and 20", F),
            ("color in ('red')", T),
            ("color not in ('red')", F),
            ("missing is null", T),
            ("color Is Not Null", T),
            ("flag = True", T),
            ("flag = fAlSe", F),
        ]);
    }

    #[test]
    fn identifiers() {
        check(&[
            ("color.shade = 'dark'", T),
            ("ünï = 'x'", T),
            ("$x_1 = 1", T),
            ("\"order-id\" = 'o-1'", T),
            ("\"color\" = 'red'", T),
            ("\"and\" IS NULL", T),
            ("Color = 'red'", U),
            ("COLOR IS NULL", T),
            ("amqp.annotation.x-opt-foo = 7", T),
            ("amqp.annotation.x-opt-foo - 1 = 6", T),
            ("_ IS NULL", T),
        ]);
    }

    #[test]
    fn like() {
        check(&[
            ("color LIKE 'red'", T),
            ("color LIKE 'RED'", F),
            ("color LIKE 'r%'", T),
            ("color LIKE '%d'", T),
            ("color LIKE '%e%'", T),
            ("color LIKE '_e_'", T),
            ("color LIKE 'r_'", F),
            ("color LIKE '___'", T),
            ("color LIKE '____'", F),
            ("color LIKE '%'", T),
            ("color LIKE '%%'", T),
            ("empty LIKE '%'", T),
            ("empty LIKE ''", T),
            ("empty LIKE '_'", F),
            ("color LIKE ''", F),
            ("color NOT LIKE 'b%'", T),
            ("color NOT LIKE 'r%'", F),
            ("color LIKE '%e%d%'", T),
            ("color LIKE '%d%e%'", F),
            ("color LIKE 'r%e%d'", T),
            ("color LIKE 'r%ed%d'", F),
            ("color LIKE 'r%d%'", T),
            ("color LIKE '%r%d'", T),
            ("color LIKE 're%ed'", F),
            ("color LIKE '_%_'", T),
            ("color LIKE '%_%_%_%'", T),
            ("color LIKE '%_%_%_%_%'", F),
            // `_` and `%` escaped.
            ("name LIKE 'a\\_b\\%c' ESCAPE '\\'", T),
            ("name LIKE 'a!_b%' ESCAPE '!'", T),
            ("name LIKE 'a!_x%' ESCAPE '!'", F),
            ("name LIKE 'a!%%' ESCAPE '!'", F),
            ("name LIKE '%!%%' ESCAPE '!'", T),
            ("name LIKE '%!%_' ESCAPE '!'", T),
            ("name LIKE '%!_%!%%' ESCAPE '!'", T),
            ("name LIKE '_____'", T),
            ("name LIKE '____'", F),
            ("esc LIKE 'a!!b' ESCAPE '!'", T),
            ("esc LIKE 'a!b'", T),
            ("color LIKE 'r!ed' ESCAPE '!'", T),
            // Regex metacharacters mean nothing.
            ("special LIKE 'a.*[b]'", T),
            ("color LIKE 'r.d'", F),
            ("color LIKE '.*'", F),
            ("quote LIKE '%''%'", T),
            // Unicode: `_` is one character.
            ("unicode LIKE 'h_llo%'", T),
            ("unicode LIKE '%w_rld'", T),
            ("unicode LIKE '%ö%'", T),
            ("unicode LIKE '___________'", T),
            ("unicode LIKE '%_ö_%'", T),
            ("unicode LIKE 'h%ö_ld'", T),
            // Not a string, or missing.
            ("size LIKE '1%'", U),
            ("flag LIKE '%'", U),
            ("missing LIKE 'a'", U),
            ("missing NOT LIKE 'a'", U),
        ]);
    }

    #[test]
    fn between() {
        check(&[
            ("size BETWEEN 10 AND 15", T),
            ("size BETWEEN 12 AND 12", T),
            ("size BETWEEN 13 AND 20", F),
            ("size BETWEEN 1 AND 11", F),
            ("size BETWEEN 15 AND 10", F),
            ("size NOT BETWEEN 13 AND 20", T),
            ("size NOT BETWEEN 10 AND 20", F),
            ("weight BETWEEN 2 AND 3", T),
            ("size BETWEEN 11.5 AND 12.5", T),
            ("size BETWEEN 1 + 1 AND 3 * 5", T),
            ("size BETWEEN -1 AND -size + 30", T),
            ("missing BETWEEN 1 AND 2", U),
            ("missing NOT BETWEEN 1 AND 2", U),
            ("size BETWEEN missing AND 10", F),
            ("size BETWEEN missing AND 20", U),
            ("size BETWEEN 20 AND missing", F),
            ("size NOT BETWEEN missing AND 10", T),
            ("color BETWEEN 1 AND 2", U),
            ("size BETWEEN color AND 20", U),
        ]);
    }

    #[test]
    fn in_lists() {
        check(&[
            ("color IN ('red', 'green')", T),
            ("color IN ('green', 'red')", T),
            ("color IN ('blue')", F),
            ("color IN ('blue', 'blue', 'green')", F),
            ("color NOT IN ('blue', 'green')", T),
            ("color NOT IN ('red')", F),
            ("missing IN ('a')", U),
            ("missing NOT IN ('a')", U),
            ("size IN (1, 12, 3)", T),
            ("size IN (12.0)", T),
            ("weight IN (2.5, 3)", T),
            ("size IN (-3, 5)", F),
            ("neg IN (-3, 5)", T),
            ("neg IN (+3, 5)", F),
            ("size IN ('12')", U),
            ("size NOT IN ('12')", U),
            ("color IN (1, 'red')", T),
            ("color IN (1, 'blue')", U),
            ("flag IN ('a')", U),
            ("nan IN (1)", F),
            ("size + 1 IN (13)", T),
        ]);
    }

    #[test]
    fn is_null() {
        check(&[
            ("missing IS NULL", T),
            ("missing IS NOT NULL", F),
            ("color IS NULL", F),
            ("color IS NOT NULL", T),
            ("nan IS NULL", F),
            ("off IS NULL", F),
            ("color IS NULL OR flag", T),
            ("NOT missing IS NULL", F),
            ("(missing = 1) IS NULL", T),
        ]);
    }

    #[test]
    fn empty_selector_selects_everything() {
        for text in ["", "   ", "\t\n"] {
            let s = Selector::parse(text).unwrap();
            assert!(s.selects_all());
            assert!(s.matches(&HashMap::new()));
            assert_eq!(s.text(), text);
        }
        let s: Selector = "color = 'red'".parse().unwrap();
        assert!(!s.selects_all());
        assert_eq!(s.to_string(), "color = 'red'");
    }

    fn parse_error(sel: &str) -> SelectorError {
        match Selector::parse(sel) {
            Ok(_) => panic!("{sel:?} parsed"),
            Err(e) => e,
        }
    }

    #[test]
    fn parse_errors_carry_positions() {
        let cases: &[(&str, usize, &str)] = &[
            ("color = ", 8, "end of selector"),
            ("color = 'red", 8, "unterminated string"),
            ("color @ 1", 6, "unexpected character"),
            ("color = 'red' AND", 17, "end of selector"),
            ("(color = 'red'", 14, "')'"),
            ("color = 'red')", 13, "unexpected ')'"),
            ("color < 'red'", 8, "= and <>"),
            ("TRUE < FALSE", 0, "= and <>"),
            ("'a' AND flag", 0, "condition"),
            ("flag OR 1", 8, "condition"),
            ("NOT 5", 4, "condition"),
            ("5", 0, "condition"),
            ("size + 1", 0, "condition"),
            ("size + 'a' = 1", 7, "number"),
            ("TRUE * 2 = 2", 0, "number"),
            ("x = -'a'", 5, "number"),
            ("size NOT 5", 9, "LIKE, IN or BETWEEN"),
            ("color LIKE 5", 11, "string literal pattern"),
            ("color LIKE color", 11, "string literal pattern"),
            ("5 LIKE 'a'", 0, "only to strings"),
            ("color LIKE 'a' ESCAPE 'ab'", 22, "exactly one character"),
            ("color LIKE 'a' ESCAPE ''", 22, "exactly one character"),
            ("color LIKE 'a' ESCAPE x", 22, "exactly one character"),
            ("color LIKE 'a!' ESCAPE '!'", 11, "escape"),
            ("size IN ()", 9, "literal in the IN list"),
            ("size IN (a)", 9, "literal in the IN list"),
            ("size IN (1,)", 11, "literal in the IN list"),
            ("size IN (1 2)", 11, "',' or ')'"),
            ("size IN 1", 8, "'('"),
            ("TRUE IN ('a')", 0, "strings and numbers"),
            ("size BETWEEN 1 OR 2", 15, "AND in BETWEEN"),
            ("flag BETWEEN TRUE AND FALSE", 13, "number"),
            ("'a' BETWEEN 1 AND 2", 0, "number"),
            ("missing IS 5", 11, "NULL"),
            ("x = NULL", 4, "IS [NOT] NULL"),
            ("9223372036854775808 = size", 0, "out of range"),
            ("x = 99999999999999999999", 4, "out of range"),
            ("x = - -9223372036854775808", 4, "out of range"),
            ("x = 0x8000000000000000", 4, "out of range"),
            ("x = 1e999", 4, "out of range"),
            ("x = 12abc", 4, "malformed number"),
            ("x = 1.2.3", 4, "malformed number"),
            ("x = 1e", 5, "exponent"),
            ("x = 1e+", 5, "exponent"),
            ("x = 0x", 4, "hexadecimal"),
            ("AND", 0, "value"),
            ("\"\" = 1", 0, "empty quoted identifier"),
            ("\"abc = 1", 0, "unterminated quoted identifier"),
            ("color ESCAPE", 6, "unexpected ESCAPE"),
            ("a = 1 b = 2", 6, "unexpected identifier"),
            ("a = 1 = 2", 6, "unexpected '='"),
            ("a == 1", 3, "value"),
            ("a != 1", 2, "unexpected character"),
            ("x = .", 4, "unexpected character"),
        ];
        for &(sel, pos, msg) in cases {
            let e = parse_error(sel);
            assert_eq!(e.position, pos, "{sel}: {e}");
            assert!(e.message.contains(msg), "{sel}: {e} (wanted {msg:?})");
            assert!(e.to_string().contains(&format!("byte {pos}")));
        }
    }

    #[test]
    fn length_is_bounded() {
        let pad = |n: usize| format!("color = '{}'", "x".repeat(n));
        let at_limit = pad(MAX_SELECTOR_LEN - pad(0).len());
        assert_eq!(at_limit.len(), MAX_SELECTOR_LEN);
        assert!(Selector::parse(&at_limit).is_ok());
        let over = pad(MAX_SELECTOR_LEN - pad(0).len() + 1);
        let e = parse_error(&over);
        assert_eq!(e.position, MAX_SELECTOR_LEN);
        assert!(parse_error(&"(".repeat(1 << 20)).message.contains("longer"));
    }

    #[test]
    fn nesting_is_bounded() {
        let parens = |n: usize| format!("{}flag{}", "(".repeat(n), ")".repeat(n));
        assert_eq!(eval_with(&parens(MAX_DEPTH), &fields()), T);
        let e = parse_error(&parens(MAX_DEPTH + 1));
        assert_eq!(e.position, MAX_DEPTH);
        assert!(e.message.contains("nested"), "{e}");
        // Deeper than the limit allows, but within the length limit: refused, no overflow.
        assert!(parse_error(&parens(2000)).message.contains("nested"));
        assert!(parse_error(&"(".repeat(4000)).message.contains("nested"));

        let nots = |n: usize| format!("{}flag", "NOT ".repeat(n));
        assert_eq!(eval_with(&nots(MAX_DEPTH), &fields()), T);
        assert!(parse_error(&nots(MAX_DEPTH + 1)).message.contains("nested"));
        assert!(parse_error(&nots(1000)).message.contains("nested"));

        let signs = |n: usize| format!("{}size = 12", "- ".repeat(n));
        assert_eq!(eval_with(&signs(MAX_DEPTH), &fields()), T);
        assert!(parse_error(&signs(2000)).message.contains("nested"));

        assert!(parse_error(&"NOT (".repeat(800)).message.contains("nested"));
    }

    #[test]
    fn long_chains_are_flat() {
        // Long but shallow: accepted, and evaluated without deep recursion.
        let ands = format!("{}flag", "flag AND ".repeat(400));
        assert!(ands.len() <= MAX_SELECTOR_LEN);
        assert_eq!(eval_with(&ands, &fields()), T);
        let ors = format!("{}flag", "off OR ".repeat(500));
        assert_eq!(eval_with(&ors, &fields()), T);
        let sum = format!("{}1 = 1001", "1 + ".repeat(1000));
        assert!(sum.len() <= MAX_SELECTOR_LEN);
        assert_eq!(eval_with(&sum, &fields()), T);
        let product = format!("{}size = 12", "1 * ".repeat(1000));
        assert_eq!(eval_with(&product, &fields()), T);
    }

    #[test]
    fn in_lists_are_bounded() {
        let list = |n: usize| {
            let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            format!("size IN ({})", items.join(","))
        };
        assert_eq!(eval_with(&list(MAX_IN_ITEMS), &fields()), T);
        let over = list(MAX_IN_ITEMS + 1);
        let e = parse_error(&over);
        assert!(e.message.contains("IN list longer"), "{e}");
        assert_eq!(e.position, over.rfind(',').unwrap() + 1);
    }

    #[test]
    fn like_cannot_blow_up() {
        // Patterns that make naive backtracking exponential.
        let mut f = fields();
        f.insert("long".into(), "a".repeat(100_000).into());
        let many_percents = format!("long LIKE '{}b'", "%a".repeat(500));
        assert_eq!(eval_with(&many_percents, &f), F);
        let underscores = format!("long LIKE '%{}b%'", "a_".repeat(200));
        assert_eq!(eval_with(&underscores, &f), F);
        let hit = format!("long LIKE '{}%'", "a%".repeat(500));
        assert_eq!(eval_with(&hit, &f), T);
    }

    // ---- message mapping ----

    fn full_message() -> Message {
        let app = Map(vec![
            (Value::string("color"), Value::string("red")),
            (Value::string("size"), Value::Int(12)),
            (Value::string("b"), Value::Byte(-1)),
            (Value::string("s"), Value::Short(-2)),
            (Value::string("l"), Value::Long(-4)),
            (Value::string("ub"), Value::Ubyte(200)),
            (Value::string("us"), Value::Ushort(60_000)),
            (Value::string("ui"), Value::Uint(4_000_000_000)),
            (Value::string("ul"), Value::Ulong(5)),
            (Value::string("ulbig"), Value::Ulong(u64::MAX)),
            (Value::string("f"), Value::Float(1.5)),
            (Value::string("d"), Value::Double(2.25)),
            (Value::string("sym"), Value::symbol("blue")),
            (Value::string("yes"), Value::Bool(true)),
            (Value::string("ts"), Value::Timestamp(Timestamp(1234))),
            (
                Value::string("bin"),
                Value::Binary(Bytes::from_static(b"xy")),
            ),
            (Value::string("nul"), Value::Null),
            (Value::string("list"), Value::List(vec![Value::Int(1)])),
            (Value::string("JMSCustom"), Value::Int(1)),
            (Value::string("x.y"), Value::string("dotted")),
        ]);
        let annotations = Map(vec![
            (Value::symbol("x-opt-foo"), Value::Int(7)),
            (Value::symbol("x-opt-name"), Value::string("n")),
        ]);
        Message::from_sections(&[
            Section::Header(Header {
                durable: true,
                priority: 7,
                delivery_count: 2,
                ..Header::default()
            }),
            Section::MessageAnnotations(MessageAnnotations(annotations)),
            Section::Properties(Properties {
                message_id: Some(MessageId::String("m-1")),
                correlation_id: Some(MessageId::Ulong(42)),
                subject: Some("order.created"),
                to: Some("orders"),
                reply_to: Some("replies"),
                creation_time: Some(Timestamp(1_700_000_000_000)),
                absolute_expiry_time: Some(Timestamp(1_700_000_060_000)),
                group_id: Some("g1"),
                group_sequence: Some(3),
                ..Properties::default()
            }),
            Section::ApplicationProperties(ApplicationProperties(app)),
            Section::Data(Data(Bytes::from_static(b"body"))),
        ])
        .unwrap()
    }

    fn check_message(m: &Message, cases: &[(&str, Option<bool>)]) {
        for &(sel, want) in cases {
            let fields = MessageFields::new(m);
            assert_eq!(eval_with(sel, &fields), want, "{sel}");
            let s = Selector::parse(sel).unwrap();
            assert_eq!(s.matches_message(m), want == T, "{sel}");
        }
    }

    #[test]
    fn message_application_properties() {
        check_message(
            &full_message(),
            &[
                ("color = 'red' AND size > 10", T),
                ("color = 'red' AND size > 12", F),
                ("b = -1 AND s = -2 AND l = -4", T),
                ("ub = 200 AND us = 60000 AND ui = 4000000000 AND ul = 5", T),
                ("ulbig > 1.8e19", T),
                ("f = 1.5 AND d = 2.25", T),
                ("sym = 'blue'", T),
                ("yes", T),
                ("ts = 1234", T),
                ("bin IS NULL", T),
                ("nul IS NULL", T),
                ("list IS NULL", T),
                ("JMSCustom = 1", T),
                ("x.y = 'dotted'", T),
                ("missing IS NULL", T),
                ("Color IS NULL", T),
            ],
        );
    }

    #[test]
    fn message_jms_headers() {
        check_message(
            &full_message(),
            &[
                ("JMSMessageID = 'm-1'", T),
                ("JMSCorrelationID = '42'", T),
                ("JMSType = 'order.created'", T),
                ("JMSType LIKE 'order.%'", T),
                ("JMSDestination = 'orders'", T),
                ("JMSReplyTo = 'replies'", T),
                ("JMSTimestamp = 1700000000000", T),
                ("JMSExpiration - JMSTimestamp = 60000", T),
                ("JMSXGroupID = 'g1'", T),
                ("JMSXGroupSeq = 3", T),
                ("JMSPriority = 7", T),
                ("JMSPriority > 4", T),
                ("JMSDeliveryMode = 'PERSISTENT'", T),
                ("JMSXDeliveryCount = 3", T),
                ("amqp.annotation.x-opt-foo = 7", T),
                ("amqp.annotation.x-opt-name = 'n'", T),
                ("amqp.annotation.x-opt-missing IS NULL", T),
                ("\"amqp.annotation.x-opt-foo\" = 7", T),
            ],
        );
    }

    #[test]
    fn message_without_sections() {
        let m = Message::from_sections(&[Section::Data(Data(Bytes::from_static(b"x")))]).unwrap();
        check_message(
            &m,
            &[
                ("JMSPriority = 4", T),
                ("JMSDeliveryMode = 'NON_PERSISTENT'", T),
                ("JMSXDeliveryCount = 1", T),
                ("JMSMessageID IS NULL", T),
                ("JMSCorrelationID IS NULL", T),
                ("JMSType IS NULL", T),
                ("JMSTimestamp IS NULL", T),
                ("JMSExpiration IS NULL", T),
                ("color IS NULL", T),
                ("color = 'red'", U),
                ("amqp.annotation.x-opt-foo IS NULL", T),
            ],
        );
    }

    #[test]
    fn message_id_forms() {
        let id = |mid: MessageId<'_>| {
            let m = Message::from_sections(&[Section::Properties(Properties {
                message_id: Some(mid),
                correlation_id: Some(mid),
                ..Properties::default()
            })])
            .unwrap();
            let f = MessageFields::new(&m);
            let a = f.get("JMSMessageID").map(|v| format!("{v:?}"));
            let b = f.get("JMSCorrelationID").map(|v| format!("{v:?}"));
            assert_eq!(a, b);
            match f.get("JMSMessageID") {
                Some(SelectorValue::String(s)) => s.into_owned(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(id(MessageId::String("abc")), "abc");
        assert_eq!(id(MessageId::Ulong(u64::MAX)), "18446744073709551615");
        let uuid = Uuid(std::array::from_fn(|i| i as u8 + 1));
        assert_eq!(
            id(MessageId::Uuid(uuid)),
            "01020304-0506-0708-090a-0b0c0d0e0f10"
        );
        assert_eq!(id(MessageId::Binary(&[0xde, 0xad, 0x00])), "dead00");
    }

    #[test]
    fn message_sections_decode_once() {
        let m = full_message();
        let f = MessageFields::new(&m);
        assert!(f.application_properties.get().is_none());
        assert!(f.header.get().is_none());
        let s = Selector::parse("color = 'red' AND size > 10").unwrap();
        assert!(s.matches(&f));
        // Only the section read was decoded.
        assert!(f.application_properties.get().is_some());
        assert!(f.header.get().is_none());
        assert!(f.properties.get().is_none());
        assert!(f.annotations.get().is_none());
        assert!(s.matches(&f));
    }

    #[test]
    fn raw_map_lookups() {
        // Over 255 bytes: encoded as map32. Non-string keys, nested values and duplicates.
        let mut pairs = vec![
            (Value::Ulong(1), Value::string("ulong key")),
            (
                Value::string("nested"),
                Value::Map(Map(vec![(Value::string("color"), Value::string("inner"))])),
            ),
            (Value::string("dup"), Value::Int(1)),
            (Value::string("dup"), Value::Int(2)),
        ];
        for i in 0..40 {
            pairs.push((
                Value::string(&format!("key{i}")),
                Value::string(&format!("value number {i}")),
            ));
        }
        pairs.push((Value::symbol("sym-key"), Value::symbol("sym-value")));
        let m = Message::from_sections(&[
            Section::MessageAnnotations(MessageAnnotations(Map(pairs.clone()))),
            Section::ApplicationProperties(ApplicationProperties(Map(pairs))),
        ])
        .unwrap();
        let span = m.index().application_properties.unwrap();
        assert!(span.len() > 300);
        check_message(
            &m,
            &[
                ("key0 = 'value number 0'", T),
                ("key39 = 'value number 39'", T),
                ("dup = 1", T),
                ("color IS NULL", T),
                ("nested IS NULL", T),
                ("\"sym-key\" = 'sym-value'", T),
                ("amqp.annotation.key39 = 'value number 39'", T),
                ("amqp.annotation.sym-key = 'sym-value'", T),
                ("amqp.annotation.dup = 1", T),
                ("key40 IS NULL", T),
            ],
        );
        // Both encodings of the map header, and garbage, without panicking.
        let section = m.contiguous(span);
        let raw = RawMap::locate(section.clone()).unwrap();
        assert_eq!(raw.len, 45);
        for cut in 0..section.len() {
            if let Some(raw) = RawMap::locate(section.slice(..cut)) {
                let _ = raw.get("key39");
            }
        }
        assert!(RawMap::locate(Bytes::from_static(&[0x00, 0x53, 0x74, 0x40])).is_none());
        assert!(RawMap::locate(Bytes::from_static(&[0x00, 0x53, 0x74, 0xc1, 0x00])).is_none());
        assert!(
            RawMap::locate(Bytes::from_static(&[
                0x00, 0x53, 0x74, 0xc1, 0x02, 0x01, 0x00
            ]))
            .is_none()
        );
        let empty =
            RawMap::locate(Bytes::from_static(&[0x00, 0x53, 0x74, 0xc1, 0x01, 0x00])).unwrap();
        assert_eq!(empty.get("x"), None);
    }

    /// Not a benchmark: prints how long matching takes, asserts nothing about it.
    #[test]
    fn timing_color_and_size() {
        use std::hint::black_box;
        use std::time::Instant;
        let message = |color: &str, size: i32| {
            let app = Map(vec![
                (Value::string("color"), Value::string(color)),
                (Value::string("size"), Value::Int(size)),
                (Value::string("region"), Value::string("eu-west-1")),
                (Value::string("tenant"), Value::string("acme")),
                (Value::string("retries"), Value::Uint(0)),
            ]);
            Message::from_sections(&[
                Section::Header(Header {
                    durable: true,
                    ..Header::default()
                }),
                Section::Properties(Properties {
                    message_id: Some(MessageId::String("ID:5f3a9c2e-7b1d-4c8a:1:1:1-42")),
                    to: Some("orders"),
                    ..Properties::default()
                }),
                Section::ApplicationProperties(ApplicationProperties(app)),
                Section::Data(Data(Bytes::from_static(&[0; 64]))),
            ])
            .unwrap()
        };
        let messages = [message("red", 20), message("blue", 20)];
        let s = Selector::parse("color = 'red' AND size > 10").unwrap();
        let n = 200_000;
        let start = Instant::now();
        let mut hits = 0;
        for i in 0..n {
            let m = black_box(&messages[i % 2]);
            hits += usize::from(s.matches(&MessageFields::new(m)));
        }
        let fresh = start.elapsed();
        assert_eq!(hits, n / 2);
        let cached = [
            MessageFields::new(&messages[0]),
            MessageFields::new(&messages[1]),
        ];
        let start = Instant::now();
        for i in 0..n {
            hits += usize::from(s.matches(black_box(&cached[i % 2])));
        }
        let warm = start.elapsed();
        assert_eq!(hits, n);
        println!(
            "selector `{}`: {:.0} ns/op decoding each message, {:.0} ns/op with sections cached",
            s.text(),
            fresh.as_nanos() as f64 / n as f64,
            warm.as_nanos() as f64 / n as f64,
        );
    }

    // ---- properties ----

    /// Text of a literal as a selector would spell it.
    fn literal_text(v: &SelectorValue<'_>) -> String {
        match v {
            SelectorValue::Bool(b) => b.to_string().to_uppercase(),
            SelectorValue::Long(v) => v.to_string(),
            SelectorValue::Double(v) => format!("{v:?}"),
            SelectorValue::String(s) => format!("'{}'", s.replace('\'', "''")),
        }
    }

    fn value_strategy() -> impl Strategy<Value = SelectorValue<'static>> {
        prop_oneof![
            any::<bool>().prop_map(SelectorValue::Bool),
            any::<i64>().prop_map(SelectorValue::Long),
            (-5i64..5).prop_map(SelectorValue::Long),
            any::<f64>()
                .prop_filter("finite", |v| v.is_finite())
                .prop_map(SelectorValue::Double),
            (-5i64..5).prop_map(|v| SelectorValue::Double(v as f64 / 2.0)),
            "[a-c' ]{0,3}".prop_map(|s| SelectorValue::String(Cow::Owned(s))),
        ]
    }

    /// The comparison as the JMS rules state it, written out case by case.
    fn reference_compare(op: &str, l: &SelectorValue<'_>, r: &SelectorValue<'_>) -> Option<bool> {
        use SelectorValue as V;
        let ord = match (l, r) {
            (V::Long(a), V::Long(b)) => Some(a.cmp(b)),
            (V::Long(a), V::Double(b)) => (*a as f64).partial_cmp(b),
            (V::Double(a), V::Long(b)) => a.partial_cmp(&(*b as f64)),
            (V::Double(a), V::Double(b)) => a.partial_cmp(b),
            (V::String(a), V::String(b)) => match op {
                "=" => return Some(a == b),
                "<>" => return Some(a != b),
                _ => return None,
            },
            (V::Bool(a), V::Bool(b)) => match op {
                "=" => return Some(a == b),
                "<>" => return Some(a != b),
                _ => return None,
            },
            _ => return None,
        };
        use std::cmp::Ordering::*;
        Some(match (op, ord) {
            ("<>", None) => true,
            (_, None) => false,
            ("=", Some(o)) => o == Equal,
            ("<>", Some(o)) => o != Equal,
            ("<", Some(o)) => o == Less,
            ("<=", Some(o)) => o != Greater,
            (">", Some(o)) => o == Greater,
            (">=", Some(o)) => o != Less,
            _ => unreachable!(),
        })
    }

    /// The LIKE semantics by plain recursion: exponential, fine for short inputs.
    fn reference_like(p: &[char], s: &[char]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some(('%', rest)) => (0..=s.len()).any(|i| reference_like(rest, &s[i..])),
            Some(('_', rest)) => !s.is_empty() && reference_like(rest, &s[1..]),
            Some((c, rest)) => s.first() == Some(c) && reference_like(rest, &s[1..]),
        }
    }

    #[derive(Debug, Clone)]
    enum Cond {
        Atom(&'static str, Option<bool>),
        Not(Box<Cond>),
        And(Box<Cond>, Box<Cond>),
        Or(Box<Cond>, Box<Cond>),
    }

    impl Cond {
        fn text(&self) -> String {
            match self {
                Cond::Atom(a, _) => (*a).to_string(),
                Cond::Not(c) => format!("NOT ({})", c.text()),
                Cond::And(a, b) => format!("({}) AND ({})", a.text(), b.text()),
                Cond::Or(a, b) => format!("({}) OR ({})", a.text(), b.text()),
            }
        }

        fn truth(&self) -> Option<bool> {
            match self {
                Cond::Atom(_, v) => *v,
                Cond::Not(c) => c.truth().map(|b| !b),
                Cond::And(a, b) => match (a.truth(), b.truth()) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                },
                Cond::Or(a, b) => match (a.truth(), b.truth()) {
                    (Some(true), _) | (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                },
            }
        }
    }

    fn cond_strategy() -> impl Strategy<Value = Cond> {
        let atom = prop_oneof![
            Just(Cond::Atom("flag", T)),
            Just(Cond::Atom("off", F)),
            Just(Cond::Atom("missing", U)),
            Just(Cond::Atom("size > 10", T)),
            Just(Cond::Atom("color = 5", U)),
            Just(Cond::Atom("color LIKE 'b%'", F)),
        ];
        atom.prop_recursive(6, 64, 2, |inner| {
            prop_oneof![
                inner.clone().prop_map(|c| Cond::Not(Box::new(c))),
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| Cond::And(Box::new(a), Box::new(b))),
                (inner.clone(), inner).prop_map(|(a, b)| Cond::Or(Box::new(a), Box::new(b))),
            ]
        })
    }

    const VOCABULARY: &[&str] = &[
        "(",
        ")",
        "NOT",
        "AND",
        "OR",
        "x",
        "y",
        "missing",
        "'s'",
        "'%_'",
        "1",
        "2.5",
        "0x1F",
        "-",
        "+",
        "*",
        "/",
        "=",
        "<>",
        "<",
        ">=",
        "BETWEEN",
        "IN",
        "LIKE",
        "ESCAPE",
        "IS",
        "NULL",
        ",",
        "TRUE",
        "\"q\"",
        "'!'",
        "9223372036854775808",
        "0",
    ];

    proptest! {
        #[test]
        fn raw_map_never_panics(tail in prop::collection::vec(any::<u8>(), 0..64), key in "[a-c]{0,2}") {
            let mut bytes = vec![0x00, 0x53, 0x74];
            bytes.extend(tail);
            if let Some(raw) = RawMap::locate(Bytes::from(bytes)) {
                let _ = raw.get(&key);
            }
        }

        #[test]
        fn parse_never_panics(text in any::<String>()) {
            if let Ok(s) = Selector::parse(&text) {
                let _ = s.evaluate(&fields());
            }
        }

        #[test]
        fn token_soup_never_panics(
            words in prop::collection::vec(prop::sample::select(VOCABULARY), 0..24),
            x in value_strategy(),
            y in value_strategy(),
        ) {
            let text = words.join(" ");
            if let Ok(s) = Selector::parse(&text) {
                let mut f = HashMap::new();
                f.insert("x".to_string(), x);
                f.insert("y".to_string(), y);
                f.insert("q".to_string(), SelectorValue::Long(1));
                let _ = s.evaluate(&f);
            }
        }

        #[test]
        fn comparisons_agree_with_reference(
            x in prop::option::of(value_strategy()),
            lit in value_strategy(),
            op in prop::sample::select(&["=", "<>", "<", "<=", ">", ">="][..]),
        ) {
            let text = format!("x {op} {}", literal_text(&lit));
            let ordering = !matches!(op, "=" | "<>");
            let static_error = ordering && matches!(lit, SelectorValue::String(_) | SelectorValue::Bool(_));
            match Selector::parse(&text) {
                Err(e) => prop_assert!(static_error, "{text}: {e}"),
                Ok(s) => {
                    prop_assert!(!static_error, "{text} parsed");
                    let mut f = HashMap::new();
                    if let Some(x) = &x {
                        f.insert("x".to_string(), x.clone());
                    }
                    let want = x.as_ref().and_then(|x| reference_compare(op, x, &lit));
                    prop_assert_eq!(s.evaluate(&f), want, "{}", text);
                    prop_assert_eq!(s.matches(&f), want == T);
                    let negated = Selector::parse(&format!("NOT ({text})")).unwrap();
                    prop_assert_eq!(negated.evaluate(&f), want.map(|b| !b));
                }
            }
        }

        #[test]
        fn like_agrees_with_reference(pattern in "[ab%_]{0,8}", text in "[ab]{0,10}") {
            let s = Selector::parse(&format!("x LIKE '{pattern}'")).unwrap();
            let mut f = HashMap::new();
            f.insert("x".to_string(), SelectorValue::String(Cow::Owned(text.clone())));
            let p: Vec<char> = pattern.chars().collect();
            let t: Vec<char> = text.chars().collect();
            prop_assert_eq!(s.evaluate(&f), Some(reference_like(&p, &t)), "{} LIKE {}", text, pattern);
        }

        #[test]
        fn logic_agrees_with_reference(c in cond_strategy()) {
            let text = c.text();
            prop_assume!(text.len() <= MAX_SELECTOR_LEN);
            prop_assert_eq!(eval_with(&text, &fields()), c.truth(), "{}", text);
        }

        #[test]
        fn integer_arithmetic_agrees(a in -1000i64..1000, b in -1000i64..1000) {
            let f = fields();
            let sum = eval_with(&format!("{a} + {b} = {}", a + b), &f);
            prop_assert_eq!(sum, T);
            let product = eval_with(&format!("{a} * {b} = {}", a * b), &f);
            prop_assert_eq!(product, T);
            let quotient = eval_with(&format!("{a} / {b} = {}", a.checked_div(b).unwrap_or(0)), &f);
            prop_assert_eq!(quotient, if b == 0 { U } else { T });
        }
    }
}
