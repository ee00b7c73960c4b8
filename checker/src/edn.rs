//! A small EDN reader: the subset Jepsen and Porcupine histories use.
//!
//! The well-known EDN crates pull in big-number, date and UUID support we
//! never need, and cost build time on a two-core machine; histories only use
//! maps, vectors, lists, sets, keywords, strings, integers, floats, `nil`,
//! booleans and the odd tagged literal (`#inst "..."`), so this reader
//! covers exactly that. It never panics on input: every problem is an
//! [`EdnError`] naming the 1-based line where it was found.

use std::fmt;

/// One EDN value.
#[derive(Clone, Debug, PartialEq)]
pub enum Edn {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// `:name`, stored without the colon.
    Keyword(String),
    Symbol(String),
    Vector(Vec<Edn>),
    List(Vec<Edn>),
    Set(Vec<Edn>),
    /// Key-value pairs in source order (keys may be any value).
    Map(Vec<(Edn, Edn)>),
    /// `#tag value`; the tag without `#`.
    Tagged(String, Box<Edn>),
}

impl Edn {
    /// Looks up a keyword key in a map (`None` for non-maps).
    pub fn get(&self, keyword: &str) -> Option<&Edn> {
        match self {
            Edn::Map(pairs) => pairs.iter().find_map(|(k, v)| match k {
                Edn::Keyword(name) if name == keyword => Some(v),
                _ => None,
            }),
            _ => None,
        }
    }

    /// Converts to JSON: keywords and symbols become strings, collections
    /// arrays, maps objects (keys rendered as strings).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Edn::Nil => Value::Null,
            Edn::Bool(b) => Value::Bool(*b),
            Edn::Int(i) => Value::from(*i),
            Edn::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Edn::Str(s) | Edn::Keyword(s) | Edn::Symbol(s) => Value::String(s.clone()),
            Edn::Vector(xs) | Edn::List(xs) | Edn::Set(xs) => {
                Value::Array(xs.iter().map(Edn::to_json).collect())
            }
            Edn::Map(pairs) => Value::Object(
                pairs
                    .iter()
                    .map(|(k, v)| {
                        let key = match k {
                            Edn::Str(s) | Edn::Keyword(s) | Edn::Symbol(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (key, v.to_json())
                    })
                    .collect(),
            ),
            Edn::Tagged(_, v) => v.to_json(),
        }
    }
}

impl fmt::Display for Edn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn seq(f: &mut fmt::Formatter<'_>, open: &str, xs: &[Edn], close: &str) -> fmt::Result {
            f.write_str(open)?;
            for (i, x) in xs.iter().enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                write!(f, "{x}")?;
            }
            f.write_str(close)
        }
        match self {
            Edn::Nil => f.write_str("nil"),
            Edn::Bool(b) => write!(f, "{b}"),
            Edn::Int(i) => write!(f, "{i}"),
            Edn::Float(x) => write!(f, "{x}"),
            Edn::Str(s) => write!(f, "{s:?}"),
            Edn::Keyword(k) => write!(f, ":{k}"),
            Edn::Symbol(s) => f.write_str(s),
            Edn::Vector(xs) => seq(f, "[", xs, "]"),
            Edn::List(xs) => seq(f, "(", xs, ")"),
            Edn::Set(xs) => seq(f, "#{", xs, "}"),
            Edn::Map(pairs) => {
                f.write_str("{")?;
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k} {v}")?;
                }
                f.write_str("}")
            }
            Edn::Tagged(t, v) => write!(f, "#{t} {v}"),
        }
    }
}

/// Why EDN text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct EdnError {
    /// 1-based line of the offending character.
    pub line: usize,
    pub reason: String,
}

/// Reads top-level forms one by one, each with the line it starts on.
pub struct EdnReader<'a> {
    src: &'a [u8],
    pos: usize,
    line: usize,
    /// Nesting depth, bounded so hostile input cannot overflow the stack.
    depth: usize,
}

const MAX_DEPTH: usize = 256;

impl<'a> EdnReader<'a> {
    pub fn new(src: &'a str) -> Self {
        EdnReader {
            src: src.as_bytes(),
            pos: 0,
            line: 1,
            depth: 0,
        }
    }

    /// The next top-level form and its starting line, `None` at the end.
    pub fn next_form(&mut self) -> Result<Option<(usize, Edn)>, EdnError> {
        self.skip_discarded()?;
        if self.pos >= self.src.len() {
            return Ok(None);
        }
        let line = self.line;
        let v = self.value()?;
        Ok(Some((line, v)))
    }

    /// The current line (after the last form read).
    pub fn line(&self) -> usize {
        self.line
    }

    fn err<T>(&self, reason: impl Into<String>) -> Result<T, EdnError> {
        Err(EdnError {
            line: self.line,
            reason: reason.into(),
        })
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        if c == b'\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\r' | b'\n' | b',' => {
                    self.bump();
                }
                b';' => {
                    while let Some(c) = self.peek() {
                        if c == b'\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                _ => break,
            }
        }
    }

    /// Skips white space and `#_ form` discards, one after another in a
    /// loop (a file of 50,000 discards must not recurse 50,000 deep); a
    /// discard inside a discard nests, and counts against the depth.
    fn skip_discarded(&mut self) -> Result<(), EdnError> {
        loop {
            self.skip_ws();
            if self.peek() != Some(b'#') || self.src.get(self.pos + 1) != Some(&b'_') {
                return Ok(());
            }
            self.bump();
            self.bump();
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return self.err("nesting too deep");
            }
            self.value()?;
            self.depth -= 1;
        }
    }

    fn value(&mut self) -> Result<Edn, EdnError> {
        self.skip_discarded()?;
        let Some(c) = self.peek() else {
            return self.err("unexpected end of input");
        };
        match c {
            b'[' | b'(' | b'{' => {
                self.bump();
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return self.err("nesting too deep");
                }
                let close = match c {
                    b'[' => b']',
                    b'(' => b')',
                    _ => b'}',
                };
                let items = self.seq(close)?;
                self.depth -= 1;
                match c {
                    b'[' => Ok(Edn::Vector(items)),
                    b'(' => Ok(Edn::List(items)),
                    _ => self.pairs(items).map(Edn::Map),
                }
            }
            b']' | b')' | b'}' => self.err(format!("unexpected `{}`", c as char)),
            b'"' => self.string().map(Edn::Str),
            b':' => {
                self.bump();
                let tok = self.token();
                if tok.is_empty() {
                    return self.err("empty keyword");
                }
                Ok(Edn::Keyword(tok))
            }
            b'#' => {
                self.bump();
                match self.peek() {
                    Some(b'{') => {
                        self.bump();
                        self.depth += 1;
                        if self.depth > MAX_DEPTH {
                            return self.err("nesting too deep");
                        }
                        let items = self.seq(b'}')?;
                        self.depth -= 1;
                        Ok(Edn::Set(items))
                    }
                    _ => {
                        let tag = self.token();
                        if tag.is_empty() {
                            return self.err("bad `#` dispatch");
                        }
                        self.depth += 1;
                        if self.depth > MAX_DEPTH {
                            return self.err("nesting too deep");
                        }
                        let v = self.value()?;
                        self.depth -= 1;
                        Ok(Edn::Tagged(tag, Box::new(v)))
                    }
                }
            }
            b'\\' => {
                self.bump();
                let tok = self.token();
                let s = match tok.as_str() {
                    "newline" => "\n".to_string(),
                    "space" => " ".to_string(),
                    "tab" => "\t".to_string(),
                    "" => match self.bump() {
                        Some(c) => (c as char).to_string(),
                        None => return self.err("unexpected end of input"),
                    },
                    t => t.to_string(),
                };
                Ok(Edn::Str(s))
            }
            _ => {
                let tok = self.token();
                if tok.is_empty() {
                    return self.err(format!("unexpected character {:?}", c as char));
                }
                Ok(atom(&tok))
            }
        }
    }

    fn seq(&mut self, close: u8) -> Result<Vec<Edn>, EdnError> {
        let mut items = Vec::new();
        loop {
            self.skip_discarded()?;
            match self.peek() {
                None => return self.err(format!("missing `{}`", close as char)),
                Some(c) if c == close => {
                    self.bump();
                    return Ok(items);
                }
                Some(_) => items.push(self.value()?),
            }
        }
    }

    fn pairs(&self, items: Vec<Edn>) -> Result<Vec<(Edn, Edn)>, EdnError> {
        if !items.len().is_multiple_of(2) {
            return self.err("a map needs an even number of forms");
        }
        let mut pairs = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((k, v));
        }
        Ok(pairs)
    }

    fn token(&mut self) -> String {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_whitespace()
                || matches!(
                    c,
                    b',' | b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'"' | b';'
                )
            {
                break;
            }
            self.bump();
        }
        String::from_utf8_lossy(&self.src[start..self.pos]).into_owned()
    }

    fn string(&mut self) -> Result<String, EdnError> {
        self.bump(); // the opening quote
        let mut out = Vec::new();
        loop {
            let Some(c) = self.bump() else {
                return self.err("unterminated string");
            };
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(e) = self.bump() else {
                        return self.err("unterminated string");
                    };
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'u' => {
                            let hex = self.src.get(self.pos..self.pos + 4);
                            let code = hex
                                .and_then(|h| std::str::from_utf8(h).ok())
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .and_then(char::from_u32);
                            let Some(ch) = code else {
                                return self.err("bad \\u escape");
                            };
                            self.pos += 4;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        other => return self.err(format!("bad escape \\{}", other as char)),
                    }
                }
                c => out.push(c),
            }
        }
        match String::from_utf8(out) {
            Ok(s) => Ok(s),
            Err(_) => self.err("string is not UTF-8"),
        }
    }
}

fn atom(tok: &str) -> Edn {
    match tok {
        "nil" => return Edn::Nil,
        "true" => return Edn::Bool(true),
        "false" => return Edn::Bool(false),
        _ => {}
    }
    let first = tok.as_bytes()[0];
    let numeric = first.is_ascii_digit()
        || ((first == b'-' || first == b'+')
            && tok.len() > 1
            && tok.as_bytes()[1].is_ascii_digit());
    if numeric {
        let int = tok.strip_suffix('N').unwrap_or(tok);
        if let Ok(i) = int.parse::<i64>() {
            return Edn::Int(i);
        }
        let float = tok.strip_suffix('M').unwrap_or(tok);
        if let Ok(x) = float.parse::<f64>() {
            return Edn::Float(x);
        }
    }
    Edn::Symbol(tok.to_string())
}

/// Parses all top-level forms of `src`.
pub fn parse_all(src: &str) -> Result<Vec<(usize, Edn)>, EdnError> {
    let mut r = EdnReader::new(src);
    let mut out = Vec::new();
    while let Some(form) = r.next_form()? {
        out.push(form);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Edn {
        let mut forms = parse_all(s).unwrap();
        assert_eq!(forms.len(), 1, "{s}");
        forms.remove(0).1
    }

    #[test]
    fn reads_a_porcupine_kv_line() {
        let e = one(r#"{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}"#);
        assert_eq!(e.get("process"), Some(&Edn::Int(0)));
        assert_eq!(e.get("f"), Some(&Edn::Keyword("append".into())));
        assert_eq!(e.get("value"), Some(&Edn::Str("x 0 0 y".into())));
        assert_eq!(e.get("missing"), None);
    }

    #[test]
    fn reads_collections_numbers_and_tags() {
        assert_eq!(
            one("[1 -2 3.5 nil true \"a\\\"b\" :k sym #{1} (1 2) #inst \"2020\" 7N]"),
            Edn::Vector(vec![
                Edn::Int(1),
                Edn::Int(-2),
                Edn::Float(3.5),
                Edn::Nil,
                Edn::Bool(true),
                Edn::Str("a\"b".into()),
                Edn::Keyword("k".into()),
                Edn::Symbol("sym".into()),
                Edn::Set(vec![Edn::Int(1)]),
                Edn::List(vec![Edn::Int(1), Edn::Int(2)]),
                Edn::Tagged("inst".into(), Box::new(Edn::Str("2020".into()))),
                Edn::Int(7),
            ])
        );
        assert_eq!(
            one("[1 #_ 2 3] ; comment"),
            Edn::Vector(vec![Edn::Int(1), Edn::Int(3)])
        );
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse_all("{:a 1}\n{:b").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(parse_all("{:a}").is_err());
        assert!(parse_all("\"abc").is_err());
        assert!(parse_all(")").is_err());
        assert!(parse_all(&"[".repeat(10_000)).is_err());
    }

    /// Regression: 50,000 `#_` in a row overflowed the stack (exit 134).
    #[test]
    fn discards_do_not_overflow_the_stack() {
        // Nested (`#_ #_ ... x y ...`): too deep, an error.
        let err = parse_all(&"#_ ".repeat(50_000)).unwrap_err();
        assert!(err.reason.contains("too deep"), "{err}");
        // One after another: fine, however many.
        let forms = parse_all(&format!("{}7", "#_ 1 ".repeat(50_000))).unwrap();
        assert_eq!(forms, vec![(1, Edn::Int(7))]);
        assert_eq!(
            parse_all("[1 #_ #_ 2 3 4]").unwrap()[0].1,
            Edn::Vector(vec![Edn::Int(1), Edn::Int(4)])
        );
        assert_eq!(parse_all("{:a 1} #_ {:b 2}").unwrap().len(), 1);
        assert!(parse_all("[1 #_]").is_err());
    }

    #[test]
    fn forms_carry_their_start_line() {
        let forms = parse_all("{:a 1}\n\n{:b 2}\n").unwrap();
        assert_eq!(forms[0].0, 1);
        assert_eq!(forms[1].0, 3);
    }
}
