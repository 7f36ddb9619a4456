//! A Thrift IDL reader for one file: its includes, the names it defines,
//! every type name it uses (with its line, to check them against the
//! tree), and every service's methods with their argument, return and
//! exception types. Constant values, annotations and enum bodies are
//! skipped.

use std::fmt;

/// An IDL type as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Type {
    /// `bool`, `byte`, `i8`, `i16`, `i32`, `i64`, `double`, `string`, `binary`.
    Base(String),
    /// `list<T>`.
    List(Box<Type>),
    /// `set<T>`.
    Set(Box<Type>),
    /// `map<K, V>`.
    Map(Box<Type>, Box<Type>),
    /// A struct, enum, exception, union or typedef by name (maybe
    /// `module.Name` from an included file).
    Named(String),
}

/// A field of an argument list or a `throws` clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field {
    /// The field id, if written.
    pub(crate) id: Option<i64>,
    /// Declared `optional`.
    pub(crate) optional: bool,
    /// The field's type.
    pub(crate) ty: Type,
    /// The field's name.
    pub(crate) name: String,
}

/// One method of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Function {
    /// Declared `oneway`.
    pub(crate) oneway: bool,
    /// `None` for `void`.
    pub(crate) returns: Option<Type>,
    /// The method name.
    pub(crate) name: String,
    /// Its arguments.
    pub(crate) args: Vec<Field>,
    /// Its declared exceptions.
    pub(crate) throws: Vec<Field>,
    /// The line it starts on.
    pub(crate) line: usize,
}

/// A service definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Service {
    /// The service name.
    pub(crate) name: String,
    /// The service it extends, if any (maybe `module.Name`).
    pub(crate) extends: Option<String>,
    /// Its own methods (not the inherited ones).
    pub(crate) functions: Vec<Function>,
    /// The line of its name.
    pub(crate) line: usize,
}

/// An `include "FILE"` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Include {
    /// The file name as written.
    pub(crate) path: String,
    /// Its line.
    pub(crate) line: usize,
}

/// What kind of thing a definition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A `struct`, `union` or `exception`.
    Struct,
    /// An `enum` or `senum`.
    Enum,
    /// A `typedef`.
    Typedef,
    /// A `const`.
    Const,
    /// A `service`.
    Service,
}

impl Kind {
    /// Whether a name of this kind can stand where a type is expected.
    pub(crate) fn is_type(self) -> bool {
        matches!(self, Kind::Struct | Kind::Enum | Kind::Typedef)
    }
}

/// A name a file defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Definition {
    /// The name.
    pub(crate) name: String,
    /// What it is.
    pub(crate) kind: Kind,
    /// The line of its name.
    pub(crate) line: usize,
}

/// A type name used in a file (in a field, argument, return, `throws`,
/// typedef, constant or container), to be resolved against the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    /// The name as written: `Name` or `module.Name`.
    pub(crate) name: String,
    /// Its line.
    pub(crate) line: usize,
}

/// What the generator needs from one IDL file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Document {
    /// `include` lines, in order.
    pub(crate) includes: Vec<Include>,
    /// Every name the file defines, in order.
    pub(crate) definitions: Vec<Definition>,
    /// Every named type the file uses, in order.
    pub(crate) references: Vec<Reference>,
    /// The field names of each struct, union, exception, argument list and
    /// `throws` list, with their lines.
    pub(crate) field_lists: Vec<Vec<Reference>>,
    /// Services, in order.
    pub(crate) services: Vec<Service>,
}

/// How deeply container types may nest (`list<list<...>>`): far beyond
/// any real IDL, and shallow enough that reading one never exhausts the
/// stack.
pub(crate) const MAX_TYPE_DEPTH: usize = 64;

/// A syntax error, with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError {
    /// 1-based line.
    pub(crate) line: usize,
    /// What was expected.
    pub(crate) message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Int(i64),
    /// A string literal's text (escapes kept as written).
    Str(String),
    /// Any other literal (floats): skipped.
    Literal,
    Punct(char),
}

fn error(line: usize, message: &str) -> ParseError {
    ParseError {
        line,
        message: message.to_string(),
    }
}

/// Splits an IDL into tokens, each with its line.
fn tokenize(source: &str) -> Result<Vec<(Token, usize)>, ParseError> {
    let mut lexer = Lexer {
        chars: source.chars().collect(),
        i: 0,
        line: 1,
    };
    let mut tokens = Vec::new();
    while let Some(&c) = lexer.chars.get(lexer.i) {
        let next = lexer.chars.get(lexer.i + 1).copied();
        match c {
            '\n' => {
                lexer.line += 1;
                lexer.i += 1;
            }
            c if c.is_whitespace() => lexer.i += 1,
            '#' => lexer.skip_line(),
            '/' if next == Some('/') => lexer.skip_line(),
            '/' if next == Some('*') => lexer.block_comment()?,
            '"' | '\'' => tokens.push(lexer.string(c)?),
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+') && next.is_some_and(|n| n.is_ascii_digit())) =>
            {
                tokens.push(lexer.number());
            }
            c if c.is_alphabetic() || c == '_' => tokens.push(lexer.ident()),
            '{' | '}' | '(' | ')' | '<' | '>' | ',' | ';' | ':' | '=' | '[' | ']' | '*' => {
                tokens.push((Token::Punct(c), lexer.line));
                lexer.i += 1;
            }
            other => {
                let message = format!("unexpected character {other:?}");
                return Err(error(lexer.line, &message));
            }
        }
    }
    Ok(tokens)
}

/// Where [`tokenize`] is in the source.
struct Lexer {
    chars: Vec<char>,
    i: usize,
    line: usize,
}

impl Lexer {
    /// Skips to the end of the line (a `#` or `//` comment).
    fn skip_line(&mut self) {
        while self.i < self.chars.len() && self.chars[self.i] != '\n' {
            self.i += 1;
        }
    }

    /// Skips a `/* */` comment.
    fn block_comment(&mut self) -> Result<(), ParseError> {
        let start = self.line;
        self.i += 2;
        loop {
            match self.chars.get(self.i) {
                None => return Err(error(start, "unterminated /* comment")),
                Some('*') if self.chars.get(self.i + 1) == Some(&'/') => {
                    self.i += 2;
                    return Ok(());
                }
                Some('\n') => self.line += 1,
                _ => {}
            }
            self.i += 1;
        }
    }

    /// A string literal quoted with `quote`.
    fn string(&mut self, quote: char) -> Result<(Token, usize), ParseError> {
        let start = self.line;
        self.i += 1;
        let text_start = self.i;
        loop {
            match self.chars.get(self.i) {
                None => return Err(error(start, "unterminated string literal")),
                Some('\\') => self.i += 1,
                Some(&q) if q == quote => break,
                Some('\n') => self.line += 1,
                _ => {}
            }
            self.i += 1;
        }
        let text: String = self.chars[text_start..self.i].iter().collect();
        self.i += 1;
        Ok((Token::Str(text), start))
    }

    /// A number: an integer (decimal or `0x` hex) or another literal.
    fn number(&mut self) -> (Token, usize) {
        let start = self.i;
        self.i += 1;
        while self.i < self.chars.len()
            && (self.chars[self.i].is_ascii_alphanumeric()
                || matches!(self.chars[self.i], '.' | '+' | '-'))
        {
            self.i += 1;
        }
        let text: String = self.chars[start..self.i].iter().collect();
        let token = if let Some(hex) = text.strip_prefix("0x") {
            i64::from_str_radix(hex, 16)
                .map(Token::Int)
                .unwrap_or(Token::Literal)
        } else {
            text.parse().map(Token::Int).unwrap_or(Token::Literal)
        };
        (token, self.line)
    }

    /// A name, dots included (`shared.Thing`).
    fn ident(&mut self) -> (Token, usize) {
        let start = self.i;
        while self.i < self.chars.len()
            && (self.chars[self.i].is_alphanumeric()
                || self.chars[self.i] == '_'
                || self.chars[self.i] == '.')
        {
            self.i += 1;
        }
        let name = self.chars[start..self.i].iter().collect();
        (Token::Ident(name), self.line)
    }
}

struct Parser {
    tokens: Vec<(Token, usize)>,
    pos: usize,
    /// Named types seen so far.
    references: Vec<Reference>,
    /// Field lists seen so far.
    field_lists: Vec<Vec<Reference>>,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(t, _)| t)
    }

    fn line(&self) -> usize {
        self.tokens
            .get(self.pos)
            .or(self.tokens.last())
            .map_or(1, |(_, l)| *l)
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            line: self.line(),
            message: message.into(),
        })
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.pos).map(|(t, _)| t.clone());
        self.pos += 1;
        token
    }

    fn is_punct(&self, c: char) -> bool {
        self.peek() == Some(&Token::Punct(c))
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Ident(w)) if w == word)
    }

    fn eat_punct(&mut self, c: char) -> bool {
        let found = self.is_punct(c);
        if found {
            self.pos += 1;
        }
        found
    }

    fn expect_punct(&mut self, c: char) -> Result<(), ParseError> {
        if self.eat_punct(c) {
            Ok(())
        } else {
            self.error(format!("expected '{c}'"))
        }
    }

    fn ident(&mut self, what: &str) -> Result<String, ParseError> {
        match self.peek() {
            Some(Token::Ident(name)) => {
                let name = name.clone();
                self.pos += 1;
                Ok(name)
            }
            _ => self.error(format!("expected {what}")),
        }
    }

    /// Skips a balanced `( ... )`, `{ ... }` or `[ ... ]` starting here.
    fn skip_group(&mut self) -> Result<(), ParseError> {
        let mut depth = 0usize;
        loop {
            match self.next() {
                Some(Token::Punct('(' | '{' | '[')) => depth += 1,
                Some(Token::Punct(')' | '}' | ']')) => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                Some(_) => {}
                None => return self.error("unbalanced brackets"),
            }
        }
    }

    fn skip_annotations(&mut self) -> Result<(), ParseError> {
        if self.is_punct('(') {
            self.skip_group()?;
        }
        Ok(())
    }

    fn skip_separator(&mut self) {
        if !self.eat_punct(',') {
            self.eat_punct(';');
        }
    }

    /// Skips a constant value: a literal, a name, or a list or map.
    fn skip_const(&mut self) -> Result<(), ParseError> {
        match self.peek() {
            Some(Token::Punct('[' | '{')) => self.skip_group(),
            Some(Token::Ident(_) | Token::Int(_) | Token::Str(_) | Token::Literal) => {
                self.pos += 1;
                Ok(())
            }
            _ => self.error("expected a constant value"),
        }
    }

    fn ty(&mut self) -> Result<Type, ParseError> {
        self.nested_ty(0)
    }

    fn nested_ty(&mut self, depth: usize) -> Result<Type, ParseError> {
        if depth > MAX_TYPE_DEPTH {
            return self.error(format!(
                "types nested more than {MAX_TYPE_DEPTH} deep (list, set and map inside each other)"
            ));
        }
        let line = self.line();
        let name = self.ident("a type")?;
        let ty = match name.as_str() {
            "list" | "set" => {
                self.expect_punct('<')?;
                let inner = Box::new(self.nested_ty(depth + 1)?);
                self.expect_punct('>')?;
                if name == "list" {
                    Type::List(inner)
                } else {
                    Type::Set(inner)
                }
            }
            "map" => {
                self.expect_punct('<')?;
                let key = Box::new(self.nested_ty(depth + 1)?);
                self.expect_punct(',')?;
                let value = Box::new(self.nested_ty(depth + 1)?);
                self.expect_punct('>')?;
                Type::Map(key, value)
            }
            "bool" | "byte" | "i8" | "i16" | "i32" | "i64" | "double" | "string" | "binary" => {
                Type::Base(name)
            }
            _ => {
                self.references.push(Reference {
                    name: name.clone(),
                    line,
                });
                Type::Named(name)
            }
        };
        self.skip_annotations()?;
        Ok(ty)
    }

    /// Fields up to the closing `close`.
    fn fields(&mut self, close: char) -> Result<Vec<Field>, ParseError> {
        let mut fields = Vec::new();
        let mut names = Vec::new();
        while !self.eat_punct(close) {
            if self.peek().is_none() {
                return self.error(format!("expected '{close}'"));
            }
            let id = match self.peek() {
                Some(Token::Int(n)) => {
                    let n = *n;
                    self.pos += 1;
                    self.expect_punct(':')?;
                    Some(n)
                }
                _ => None,
            };
            let mut optional = false;
            if self.is_word("optional") || self.is_word("required") {
                optional = self.is_word("optional");
                self.pos += 1;
            }
            let ty = self.ty()?;
            let line = self.line();
            let name = self.ident("a field name")?;
            names.push(Reference {
                name: name.clone(),
                line,
            });
            if self.eat_punct('=') {
                self.skip_const()?;
            }
            self.skip_annotations()?;
            self.skip_separator();
            fields.push(Field {
                id,
                optional,
                ty,
                name,
            });
        }
        self.field_lists.push(names);
        Ok(fields)
    }

    fn service(&mut self) -> Result<Service, ParseError> {
        let line = self.line();
        let name = self.ident("a service name")?;
        let extends = if self.is_word("extends") {
            self.pos += 1;
            Some(self.ident("the name of the service it extends")?)
        } else {
            None
        };
        self.expect_punct('{')?;
        let mut functions = Vec::new();
        while !self.eat_punct('}') {
            if self.peek().is_none() {
                return self.error("expected '}' closing the service");
            }
            let function_line = self.line();
            let oneway = self.is_word("oneway");
            if oneway {
                self.pos += 1;
            }
            let returns = if self.is_word("void") {
                self.pos += 1;
                None
            } else {
                Some(self.ty()?)
            };
            let fname = self.ident("a method name")?;
            self.expect_punct('(')?;
            let args = self.fields(')')?;
            let throws = if self.is_word("throws") {
                self.pos += 1;
                self.expect_punct('(')?;
                self.fields(')')?
            } else {
                Vec::new()
            };
            self.skip_annotations()?;
            self.skip_separator();
            functions.push(Function {
                oneway,
                returns,
                name: fname,
                args,
                throws,
                line: function_line,
            });
        }
        self.skip_annotations()?;
        Ok(Service {
            name,
            extends,
            functions,
            line,
        })
    }

    /// A definition's name, recorded with its line.
    fn define(&mut self, document: &mut Document, kind: Kind) -> Result<(), ParseError> {
        let line = self.line();
        let name = self.ident("a name")?;
        document.definitions.push(Definition { name, kind, line });
        Ok(())
    }

    fn document(&mut self) -> Result<Document, ParseError> {
        let mut document = Document::default();
        while let Some(token) = self.next() {
            let Token::Ident(word) = token else {
                self.pos -= 1;
                return self.error("expected a definition (struct, service, ...)");
            };
            match word.as_str() {
                "include" => {
                    let line = self.line();
                    match self.next() {
                        Some(Token::Str(path)) => document.includes.push(Include { path, line }),
                        _ => {
                            self.pos -= 1;
                            return self.error("expected a file name in quotes after include");
                        }
                    }
                }
                "cpp_include" => match self.next() {
                    Some(Token::Str(_)) => {}
                    _ => return self.error("expected a file name"),
                },
                "namespace" => {
                    if self.eat_punct('*') {
                    } else {
                        self.ident("a namespace scope")?;
                    }
                    self.ident("a namespace")?;
                    self.skip_annotations()?;
                }
                "typedef" => {
                    self.ty()?;
                    self.define(&mut document, Kind::Typedef)?;
                    self.skip_annotations()?;
                }
                "const" => {
                    self.ty()?;
                    self.define(&mut document, Kind::Const)?;
                    self.expect_punct('=')?;
                    self.skip_const()?;
                }
                "enum" | "senum" => {
                    self.define(&mut document, Kind::Enum)?;
                    if !self.is_punct('{') {
                        return self.error("expected '{'");
                    }
                    self.skip_group()?;
                    self.skip_annotations()?;
                }
                "struct" | "union" | "exception" => {
                    self.define(&mut document, Kind::Struct)?;
                    if self.is_word("xsd_all") {
                        self.pos += 1;
                    }
                    self.expect_punct('{')?;
                    self.fields('}')?;
                    self.skip_annotations()?;
                }
                "service" => {
                    let service = self.service()?;
                    document.definitions.push(Definition {
                        name: service.name.clone(),
                        kind: Kind::Service,
                        line: service.line,
                    });
                    document.services.push(service);
                }
                other => {
                    self.pos -= 1;
                    return self.error(format!("unexpected {other:?}"));
                }
            }
            self.skip_separator();
        }
        document.references = std::mem::take(&mut self.references);
        document.field_lists = std::mem::take(&mut self.field_lists);
        Ok(document)
    }
}

/// Reads an IDL file's text.
pub(crate) fn parse(source: &str) -> Result<Document, ParseError> {
    Parser {
        tokens: tokenize(source)?,
        pos: 0,
        references: Vec::new(),
        field_lists: Vec::new(),
    }
    .document()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_services_and_skips_the_rest() {
        let doc = parse(
            r#"
            include "shared.thrift"
            namespace rs example   # comment
            /* a block
               comment */
            typedef i64 UserId
            const map<string, list<i32>> X = {"a": [1, 2]}
            enum Color { RED = 1, GREEN }
            struct Point { 1: required double x; 2: optional double y = 0.5 } (annotated = "yes")
            exception Oops { 1: string message }
            service Base { void ping() }
            service Example extends Base {
              bool is_healthy(),
              map<string, set<UserId>> find(1: list<Point> points, 2: optional string q) throws (1: Oops oops, 2: shared.Other other);
              oneway void fire(1: string note)
            }
            "#,
        )
        .unwrap();
        assert_eq!(doc.includes[0].path, "shared.thrift");
        let typedefs: Vec<_> = doc
            .definitions
            .iter()
            .filter(|d| d.kind == Kind::Typedef)
            .map(|d| (d.name.as_str(), d.line))
            .collect();
        assert_eq!(typedefs, vec![("UserId", 6)]);
        let names: Vec<_> = doc.references.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            vec!["UserId", "Point", "Oops", "shared.Other"],
            "every named type used, the struct bodies' included"
        );
        assert_eq!(doc.services.len(), 2);
        let example = &doc.services[1];
        assert_eq!(example.extends.as_deref(), Some("Base"));
        let find = &example.functions[1];
        assert_eq!(find.name, "find");
        assert_eq!(
            find.returns,
            Some(Type::Map(
                Box::new(Type::Base("string".into())),
                Box::new(Type::Set(Box::new(Type::Named("UserId".into()))))
            ))
        );
        assert!(find.args[1].optional);
        assert_eq!(find.throws[1].ty, Type::Named("shared.Other".into()));
        assert!(example.functions[2].oneway);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("service S {\n  void f(1: i32 a\n}\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = parse("struct S { 1: i32 a }\nbogus\n").unwrap_err();
        assert_eq!(e.to_string(), "line 2: unexpected \"bogus\"");
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!(
            "typedef {}i32{} T\n",
            "list<".repeat(50_000),
            ">".repeat(50_000)
        );
        let e = parse(&deep).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("nested more than 64 deep"), "{e}");
        let fine = format!("typedef {}i32{} T\n", "list<".repeat(64), ">".repeat(64));
        parse(&fine).unwrap();
    }
}
