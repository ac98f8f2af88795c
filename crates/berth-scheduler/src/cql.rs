//! ECS cluster query language (CQL): the expressions used by `memberOf`
//! placement constraints and `ListContainerInstances --filter`.
//!
//! This module owns tokenizing, parsing (into [`Expr`]) and evaluating an
//! expression against one container instance seen through [`InstanceView`].
//! Regexes and dates are compiled/parsed once at parse time so evaluation
//! on thousands of instances does no re-parsing.
//!
//! Semantics chosen (ECS documents these only by example):
//! - `attribute:NAME` ordering operators compare numerically when both
//!   sides parse as numbers, otherwise lexicographically.
//! - `agentVersion` ordering compares dotted numeric components (`1.14.5`).
//! - `registeredAt` compares instants; date-only arguments mean midnight UTC.
//! - `task:group` positive operators are true if *any* task group on the
//!   instance satisfies them; `exists` means the instance runs any task.
//! - Negated operators (`!=`, `not_in`, `not_matches`, `not_exists`) are the
//!   logical negation of their positive form, so a missing attribute is
//!   `!=` to every value.
//! - `matches` is a full match (Java `String.matches` semantics).

use std::cmp::Ordering;
use std::fmt;

use regex::Regex;
use thiserror::Error;

/// Longest expression ECS accepts in a `memberOf` constraint.
pub const MAX_EXPRESSION_LEN: usize = 2000;

/// A parse failure, pointing at a byte offset in the input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "invalid cluster query expression at position {position}: expected {expected}, found {found}"
)]
pub struct ParseError {
    /// Byte offset of the offending token (input length for end of input).
    pub position: usize,
    /// What the parser wanted here.
    pub expected: String,
    /// What it saw (`end of input` at the end).
    pub found: String,
}

/// One container instance as the query language sees it.
pub trait InstanceView {
    fn attribute(&self, name: &str) -> Option<&str>;
    fn agent_connected(&self) -> bool;
    fn agent_version(&self) -> Option<&str>;
    fn ec2_instance_id(&self) -> Option<&str>;
    /// Registration time, epoch milliseconds.
    fn registered_at_millis(&self) -> i64;
    fn running_tasks_count(&self) -> u64;
    /// Calls `f` for each task group with at least one task on the instance,
    /// stopping at the first `true`; returns whether any call returned `true`.
    fn any_task_group(&self, f: &mut dyn FnMut(&str) -> bool) -> bool;
}

/// The left-hand side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    AgentConnected,
    AgentVersion,
    Attribute(String),
    Ec2InstanceId,
    RegisteredAt,
    RunningTasksCount,
    TaskGroup,
}

impl Subject {
    /// True if the subject depends only on the instance's attributes (and so
    /// can be cached per distinct attribute set).
    pub fn is_attribute(&self) -> bool {
        matches!(self, Subject::Attribute(_))
    }
}

/// Comparison operator in its positive form; negation is carried separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
    Exists,
    In,
    Matches,
}

/// A typed right-hand side, prepared at parse time.
#[derive(Debug, Clone)]
pub enum Arg {
    None,
    Value(String),
    List(Vec<String>),
    Regex(Regex),
}

/// Structural equality; regexes compare by pattern, so two parses of the
/// same text are equal (the placer finds its cached index by request).
impl PartialEq for Arg {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Arg::None, Arg::None) => true,
            (Arg::Value(a), Arg::Value(b)) => a == b,
            (Arg::List(a), Arg::List(b)) => a == b,
            (Arg::Regex(a), Arg::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl Eq for Arg {}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp {
        subject: Subject,
        op: CmpOp,
        negated: bool,
        arg: Arg,
    },
}

impl Expr {
    /// Parses an expression; errors carry the position and what was expected.
    pub fn parse(input: &str) -> Result<Expr, ParseError> {
        parse(input)
    }

    /// Evaluates the expression against one instance.
    pub fn eval(&self, inst: &dyn InstanceView) -> bool {
        match self {
            Expr::And(a, b) => a.eval(inst) && b.eval(inst),
            Expr::Or(a, b) => a.eval(inst) || b.eval(inst),
            Expr::Not(e) => !e.eval(inst),
            Expr::Cmp {
                subject,
                op,
                negated,
                arg,
            } => eval_cmp(subject, *op, arg, inst) != *negated,
        }
    }

    /// True if the result depends only on instance attributes.
    pub fn attributes_only(&self) -> bool {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => a.attributes_only() && b.attributes_only(),
            Expr::Not(e) => e.attributes_only(),
            Expr::Cmp { subject, .. } => subject.is_attribute(),
        }
    }
}

/// Parses `input` (convenience for [`Expr::parse`]).
pub fn parse(input: &str) -> Result<Expr, ParseError> {
    if input.len() > MAX_EXPRESSION_LEN {
        return Err(ParseError {
            position: MAX_EXPRESSION_LEN,
            expected: format!("at most {MAX_EXPRESSION_LEN} characters"),
            found: format!("{} characters", input.len()),
        });
    }
    let tokens = lex(input)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        len: input.len(),
        depth: 0,
    };
    let e = p.or_expr()?;
    if let Some(t) = p.peek() {
        return Err(p.err_at(t.pos, "`and`, `or` or end of input", &t.kind.to_string()));
    }
    Ok(e)
}

// ---------------------------------------------------------------- lexing

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    AndAnd,
    OrOr,
    EqEq,
    NotEq,
    Ge,
    Le,
    Gt,
    Lt,
    Tilde,    // =~
    NotTilde, // !~
    Bang,
    Word(String),
    Quoted(String),
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Tok::LParen => "`(`",
            Tok::RParen => "`)`",
            Tok::LBracket => "`[`",
            Tok::RBracket => "`]`",
            Tok::Comma => "`,`",
            Tok::AndAnd => "`&&`",
            Tok::OrOr => "`||`",
            Tok::EqEq => "`==`",
            Tok::NotEq => "`!=`",
            Tok::Ge => "`>=`",
            Tok::Le => "`<=`",
            Tok::Gt => "`>`",
            Tok::Lt => "`<`",
            Tok::Tilde => "`=~`",
            Tok::NotTilde => "`!~`",
            Tok::Bang => "`!`",
            Tok::Word(w) => return write!(f, "`{w}`"),
            Tok::Quoted(w) => return write!(f, "'{w}'"),
        };
        f.write_str(s)
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: Tok,
    pos: usize,
}

/// Characters that end a bare word. `=`, `!`, `<`, `>`, `&`, `|` are
/// excluded so `a==b` lexes as three tokens; values needing them must be
/// quoted.
fn is_word_char(c: char) -> bool {
    !(c.is_whitespace() || "()[],'\"=!<>&|".contains(c))
}

fn lex(input: &str) -> Result<Vec<Token>, ParseError> {
    let mut out = Vec::new();
    let mut it = input.char_indices().peekable();
    while let Some((pos, c)) = it.next() {
        let next = it.peek().map(|&(_, n)| n);
        let two = |t: Tok, it: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
            it.next();
            t
        };
        let kind = match (c, next) {
            (c, _) if c.is_whitespace() => continue,
            ('(', _) => Tok::LParen,
            (')', _) => Tok::RParen,
            ('[', _) => Tok::LBracket,
            (']', _) => Tok::RBracket,
            (',', _) => Tok::Comma,
            ('&', Some('&')) => two(Tok::AndAnd, &mut it),
            ('|', Some('|')) => two(Tok::OrOr, &mut it),
            ('=', Some('=')) => two(Tok::EqEq, &mut it),
            ('=', Some('~')) => two(Tok::Tilde, &mut it),
            ('!', Some('=')) => two(Tok::NotEq, &mut it),
            ('!', Some('~')) => two(Tok::NotTilde, &mut it),
            ('>', Some('=')) => two(Tok::Ge, &mut it),
            ('<', Some('=')) => two(Tok::Le, &mut it),
            ('>', _) => Tok::Gt,
            ('<', _) => Tok::Lt,
            ('!', _) => Tok::Bang,
            ('\'' | '"', _) => {
                let mut s = String::new();
                let mut closed = false;
                for (_, d) in it.by_ref() {
                    if d == c {
                        closed = true;
                        break;
                    }
                    s.push(d);
                }
                if !closed {
                    return Err(ParseError {
                        position: pos,
                        expected: format!("closing {c}"),
                        found: "end of input".into(),
                    });
                }
                Tok::Quoted(s)
            }
            (c, _) if is_word_char(c) => {
                let mut s = String::from(c);
                while let Some(&(_, d)) = it.peek() {
                    if !is_word_char(d) {
                        break;
                    }
                    s.push(d);
                    it.next();
                }
                Tok::Word(s)
            }
            (c, _) => {
                return Err(ParseError {
                    position: pos,
                    expected: "a subject, operator or value".into(),
                    found: format!("`{c}`"),
                });
            }
        };
        out.push(Token { kind, pos });
    }
    Ok(out)
}

// ---------------------------------------------------------------- parsing

/// Nesting bound so hostile input cannot overflow the stack.
const MAX_DEPTH: usize = 64;

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    len: usize,
    depth: usize,
}

fn word_is(t: &Tok, w: &str) -> bool {
    matches!(t, Tok::Word(x) if x.eq_ignore_ascii_case(w))
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_kind(&self) -> Option<&Tok> {
        self.peek().map(|t| &t.kind)
    }

    fn err_at(&self, position: usize, expected: &str, found: &str) -> ParseError {
        ParseError {
            position,
            expected: expected.into(),
            found: found.into(),
        }
    }

    fn err_here(&self, expected: &str) -> ParseError {
        match self.peek() {
            Some(t) => self.err_at(t.pos, expected, &t.kind.to_string()),
            None => self.err_at(self.len, expected, "end of input"),
        }
    }

    fn or_expr(&mut self) -> Result<Expr, ParseError> {
        let mut lhs = self.and_expr()?;
        while matches!(self.peek_kind(), Some(t) if *t == Tok::OrOr || word_is(t, "or")) {
            self.pos += 1;
            let rhs = self.and_expr()?;
            lhs = Expr::Or(Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn and_expr(&mut self) -> Result<Expr, ParseError> {
        let mut lhs = self.unary()?;
        while matches!(self.peek_kind(), Some(t) if *t == Tok::AndAnd || word_is(t, "and")) {
            self.pos += 1;
            let rhs = self.unary()?;
            lhs = Expr::And(Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.err_here("less deeply nested expression"));
        }
        self.depth += 1;
        let r = self.unary_inner();
        self.depth -= 1;
        r
    }

    fn unary_inner(&mut self) -> Result<Expr, ParseError> {
        match self.peek_kind() {
            Some(t) if *t == Tok::Bang || word_is(t, "not") => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Some(Tok::LParen) => {
                self.pos += 1;
                let e = self.or_expr()?;
                if self.peek_kind() != Some(&Tok::RParen) {
                    return Err(self.err_here("`)`"));
                }
                self.pos += 1;
                Ok(e)
            }
            _ => self.comparison(),
        }
    }

    fn subject(&mut self) -> Result<Subject, ParseError> {
        const EXPECTED: &str = "a subject (agentConnected, agentVersion, attribute:NAME, ec2InstanceId, registeredAt, runningTasksCount, task:group)";
        let Some(Token {
            kind: Tok::Word(w), ..
        }) = self.peek()
        else {
            return Err(self.err_here(EXPECTED));
        };
        let s = match w.as_str() {
            "agentConnected" => Subject::AgentConnected,
            "agentVersion" => Subject::AgentVersion,
            "ec2InstanceId" => Subject::Ec2InstanceId,
            "registeredAt" => Subject::RegisteredAt,
            "runningTasksCount" => Subject::RunningTasksCount,
            "task:group" => Subject::TaskGroup,
            w => match w.strip_prefix("attribute:") {
                Some(name) if !name.is_empty() => Subject::Attribute(name.to_string()),
                _ => return Err(self.err_here(EXPECTED)),
            },
        };
        self.pos += 1;
        Ok(s)
    }

    fn operator(&mut self) -> Result<(CmpOp, bool), ParseError> {
        const EXPECTED: &str =
            "an operator (==, !=, >, >=, <, <=, exists, !exists, in, not_in, matches, not_matches)";
        let Some(t) = self.peek().cloned() else {
            return Err(self.err_here(EXPECTED));
        };
        let op = match &t.kind {
            Tok::EqEq => (CmpOp::Eq, false),
            Tok::NotEq => (CmpOp::Eq, true),
            Tok::Gt => (CmpOp::Gt, false),
            Tok::Ge => (CmpOp::Ge, false),
            Tok::Lt => (CmpOp::Lt, false),
            Tok::Le => (CmpOp::Le, false),
            Tok::Tilde => (CmpOp::Matches, false),
            Tok::NotTilde => (CmpOp::Matches, true),
            Tok::Bang => {
                // `!exists` / `!in` are two tokens because `!` never joins a word.
                let op = match self.tokens.get(self.pos + 1).map(|t| &t.kind) {
                    Some(n) if word_is(n, "exists") => (CmpOp::Exists, true),
                    Some(n) if word_is(n, "in") => (CmpOp::In, true),
                    _ => return Err(self.err_here(EXPECTED)),
                };
                self.pos += 1;
                op
            }
            Tok::Word(w) => match w.to_ascii_lowercase().as_str() {
                "equals" => (CmpOp::Eq, false),
                "not_equals" => (CmpOp::Eq, true),
                "greater_than" => (CmpOp::Gt, false),
                "greater_than_equal" => (CmpOp::Ge, false),
                "less_than" => (CmpOp::Lt, false),
                "less_than_equal" => (CmpOp::Le, false),
                "exists" => (CmpOp::Exists, false),
                "not_exists" => (CmpOp::Exists, true),
                "in" => (CmpOp::In, false),
                "not_in" => (CmpOp::In, true),
                "matches" => (CmpOp::Matches, false),
                "not_matches" => (CmpOp::Matches, true),
                _ => return Err(self.err_here(EXPECTED)),
            },
            _ => return Err(self.err_here(EXPECTED)),
        };
        self.pos += 1;
        Ok(op)
    }

    fn value(&mut self) -> Result<(String, usize), ParseError> {
        match self.peek().cloned() {
            Some(Token {
                kind: Tok::Word(w) | Tok::Quoted(w),
                pos,
            }) => {
                self.pos += 1;
                Ok((w, pos))
            }
            _ => Err(self.err_here("a value")),
        }
    }

    fn comparison(&mut self) -> Result<Expr, ParseError> {
        let subject = self.subject()?;
        let (op, negated) = self.operator()?;
        let arg = match op {
            CmpOp::Exists => Arg::None,
            CmpOp::In => {
                if self.peek_kind() != Some(&Tok::LBracket) {
                    return Err(self.err_here("`[`"));
                }
                self.pos += 1;
                let mut list = Vec::new();
                loop {
                    let (v, pos) = self.value()?;
                    list.push(check_value(&subject, &v, pos)?);
                    match self.peek_kind() {
                        Some(Tok::Comma) => self.pos += 1,
                        Some(Tok::RBracket) => {
                            self.pos += 1;
                            break;
                        }
                        _ => return Err(self.err_here("`,` or `]`")),
                    }
                }
                Arg::List(list)
            }
            CmpOp::Matches => {
                let (v, pos) = self.value()?;
                let re = Regex::new(&format!("^(?:{v})$")).map_err(|e| ParseError {
                    position: pos,
                    expected: "a valid regular expression".into(),
                    found: e.to_string(),
                })?;
                Arg::Regex(re)
            }
            _ => {
                let (v, pos) = self.value()?;
                Arg::Value(check_value(&subject, &v, pos)?)
            }
        };
        Ok(Expr::Cmp {
            subject,
            op,
            negated,
            arg,
        })
    }
}

/// Rejects arguments the subject can never compare against, so typos fail
/// at parse time rather than silently matching nothing.
fn check_value(subject: &Subject, v: &str, pos: usize) -> Result<String, ParseError> {
    let bad = |expected: &str| ParseError {
        position: pos,
        expected: expected.into(),
        found: format!("`{v}`"),
    };
    match subject {
        Subject::AgentConnected if !matches!(v, "true" | "false") => Err(bad("`true` or `false`")),
        Subject::RunningTasksCount if v.parse::<u64>().is_err() => {
            Err(bad("a non-negative integer"))
        }
        Subject::RegisteredAt if parse_date_millis(v).is_none() => Err(bad(
            "a date (2018-06-18, 2018-06-18T22:28:28Z or 2018-06-18T22:28:28+00:00)",
        )),
        _ => Ok(v.to_string()),
    }
}

// ---------------------------------------------------------------- evaluation

fn ordering_matches(op: CmpOp, ord: Ordering) -> bool {
    match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
        _ => false,
    }
}

/// Numeric when both sides are numbers, else lexicographic.
fn compare_str(a: &str, b: &str) -> Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        _ => a.cmp(b),
    }
}

/// Dotted version comparison; non-numeric components compare as strings.
fn compare_version(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('v');
    let b = b.trim_start_matches('v');
    let mut ai = a.split('.');
    let mut bi = b.split('.');
    loop {
        match (ai.next(), bi.next()) {
            (None, None) => return Ordering::Equal,
            (x, y) => {
                let x = x.unwrap_or("0");
                let y = y.unwrap_or("0");
                let o = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(p), Ok(q)) => p.cmp(&q),
                    _ => x.cmp(y),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

/// Compares an optional string-valued subject.
fn eval_str(value: Option<&str>, op: CmpOp, arg: &Arg, cmp: fn(&str, &str) -> Ordering) -> bool {
    match (op, arg) {
        (CmpOp::Exists, _) => value.is_some(),
        (_, _) if value.is_none() => false,
        (CmpOp::In, Arg::List(l)) => value.is_some_and(|v| l.iter().any(|x| x == v)),
        (CmpOp::Matches, Arg::Regex(re)) => value.is_some_and(|v| re.is_match(v)),
        (CmpOp::Eq, Arg::Value(x)) => value == Some(x.as_str()),
        (op, Arg::Value(x)) => value.is_some_and(|v| ordering_matches(op, cmp(v, x))),
        _ => false,
    }
}

fn eval_cmp(subject: &Subject, op: CmpOp, arg: &Arg, inst: &dyn InstanceView) -> bool {
    match subject {
        Subject::Attribute(name) => eval_str(inst.attribute(name), op, arg, compare_str),
        Subject::Ec2InstanceId => eval_str(inst.ec2_instance_id(), op, arg, str::cmp),
        Subject::AgentVersion => eval_str(inst.agent_version(), op, arg, compare_version),
        Subject::AgentConnected => {
            let v = if inst.agent_connected() {
                "true"
            } else {
                "false"
            };
            eval_str(Some(v), op, arg, str::cmp)
        }
        Subject::RunningTasksCount => {
            let n = inst.running_tasks_count();
            let num = |s: &str| s.parse::<u64>().ok();
            match (op, arg) {
                (CmpOp::Exists, _) => true,
                (CmpOp::In, Arg::List(l)) => l.iter().any(|x| num(x) == Some(n)),
                (CmpOp::Matches, Arg::Regex(re)) => re.is_match(&n.to_string()),
                (op, Arg::Value(x)) => num(x).is_some_and(|x| ordering_matches(op, n.cmp(&x))),
                _ => false,
            }
        }
        Subject::RegisteredAt => {
            let t = inst.registered_at_millis();
            match (op, arg) {
                (CmpOp::Exists, _) => true,
                (CmpOp::In, Arg::List(l)) => l.iter().any(|x| parse_date_millis(x) == Some(t)),
                (CmpOp::Matches, Arg::Regex(_)) => false,
                (op, Arg::Value(x)) => {
                    parse_date_millis(x).is_some_and(|x| ordering_matches(op, t.cmp(&x)))
                }
                _ => false,
            }
        }
        Subject::TaskGroup => match (op, arg) {
            (CmpOp::Exists, _) => inst.any_task_group(&mut |_| true),
            (CmpOp::In, Arg::List(l)) => inst.any_task_group(&mut |g| l.iter().any(|x| x == g)),
            (CmpOp::Matches, Arg::Regex(re)) => inst.any_task_group(&mut |g| re.is_match(g)),
            (op, Arg::Value(x)) => {
                inst.any_task_group(&mut |g| ordering_matches(op, g.cmp(x.as_str())))
            }
            _ => false,
        },
    }
}

// ---------------------------------------------------------------- dates

/// Days since 1970-01-01 for a proleptic Gregorian date (Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn num(s: &str, len: usize) -> Option<i64> {
    if s.len() == len && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` to epoch millis.
pub fn parse_date_millis(s: &str) -> Option<i64> {
    let date = s.get(..10)?;
    let y = num(date.get(..4)?, 4)?;
    let m = num(date.get(5..7)?, 2)?;
    let d = num(date.get(8..10)?, 2)?;
    if date.as_bytes()[4] != b'-' || date.as_bytes()[7] != b'-' {
        return None;
    }
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let day_ms = days_from_civil(y, m, d) * 86_400_000;
    let rest = &s[10..];
    if rest.is_empty() {
        return Some(day_ms);
    }
    let rest = rest.strip_prefix('T').or_else(|| rest.strip_prefix(' '))?;
    let hh = num(rest.get(..2)?, 2)?;
    let mm = num(rest.get(3..5)?, 2)?;
    let ss = num(rest.get(6..8)?, 2)?;
    if rest.as_bytes()[2] != b':' || rest.as_bytes()[5] != b':' || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let mut tail = &rest[8..];
    let mut frac_ms = 0;
    if let Some(f) = tail.strip_prefix('.') {
        let digits = f.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let ms: String = f[..digits].chars().chain("000".chars()).take(3).collect();
        frac_ms = ms.parse::<i64>().ok()?;
        tail = &f[digits..];
    }
    let offset_min = match tail {
        "Z" | "z" | "" => 0,
        t => {
            let sign = match t.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let oh = num(t.get(1..3)?, 2)?;
            let om = num(t.get(4..6)?, 2)?;
            if t.len() != 6 || t.as_bytes()[3] != b':' {
                return None;
            }
            sign * (oh * 60 + om)
        }
    };
    Some(day_ms + ((hh * 60 + mm - offset_min) * 60 + ss) * 1000 + frac_ms)
}
