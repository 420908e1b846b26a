//! SQL snippets inside YAML: parsing them with DataFusion's SQL parser, mapping the parser's
//! positions back to the YAML file, and the few AST queries and rewrites the language needs.
//!
//! Positions: sqlparser reports 1-based `line:column` inside the snippet; a [`Text`] knows
//! where each character of the snippet sits in the file, so every diagnostic lands on the
//! exact bytes of the YAML source, block scalars included.

use std::collections::HashSet;
use std::ops::{ControlFlow, Range};
use std::sync::LazyLock;

use datafusion::sql::parser::DFParserBuilder;
use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectNamePart, Spanned,
    Value, Visit, Visitor,
};
use datafusion::sql::sqlparser::tokenizer::Span;

use crate::diag::{Code, Diagnostic};
use crate::spec::Text;

/// A parsed SQL expression and the text it came from.
#[derive(Debug, Clone)]
pub struct Sql {
    pub text: Text,
    pub ast: Expr,
}

impl Sql {
    /// The file range of an AST span of this snippet.
    pub fn span(&self, s: Span) -> Range<usize> {
        map_span(&self.text, s)
    }

    /// The file range of an AST node of this snippet.
    pub fn span_of(&self, node: &impl Spanned) -> Range<usize> {
        self.span(node.span())
    }
}

/// The value offset just past the balanced parenthesis group starting at `at` (after
/// spaces), or `None` if no group starts there. Quoted strings and identifiers are skipped.
fn after_group(s: &str, at: usize) -> Option<usize> {
    let rest = &s[at..];
    let open = at + rest.len() - rest.trim_start().len();
    if !s[open..].starts_with('(') {
        return None;
    }
    let (mut depth, mut quote) = (0usize, None::<char>);
    for (i, c) in s[open..].char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

impl Sql {
    /// The file range of a whole function call whose name sqlparser spans as `name`: the
    /// name, its argument list and a `FILTER (…)` clause, since sqlparser's span of a call
    /// covers only its name.
    pub fn call_span(&self, name: Span) -> Range<usize> {
        let v = &self.text.value;
        let start = self.text.offset_of(name.start.line, name.start.column);
        let mut end = self
            .text
            .offset_of(name.end.line, name.end.column)
            .max(start);
        if let Some(e) = after_group(v, end) {
            end = e;
            let rest = &v[end..];
            let word = rest.trim_start();
            if word.len() >= 6 && word[..6].eq_ignore_ascii_case("filter") {
                let after_kw = end + (rest.len() - word.len()) + 6;
                if let Some(e) = after_group(v, after_kw) {
                    end = e;
                }
            }
        }
        self.text.file_span(start..end)
    }
}

/// The file range of a sqlparser span inside `text`.
pub fn map_span(text: &Text, s: Span) -> Range<usize> {
    text.sql_span((s.start.line, s.start.column), (s.end.line, s.end.column))
}

/// Parses a SQL expression (a formula, filter, dimension…).
pub fn parse_expr(text: &Text) -> Result<Sql, Diagnostic> {
    if text.value.trim().is_empty() {
        return Err(
            Diagnostic::error(Code::SqlSyntax, "empty SQL expression").at(
                text.file,
                text.span.start..text.span.end.max(text.span.start + 1),
                "write a SQL expression here",
            ),
        );
    }
    let parsed = DFParserBuilder::new(text.value.as_str())
        .with_recursion_limit(64)
        .build()
        .and_then(|mut p| p.parse_into_expr());
    match parsed {
        Ok(e) if e.alias.is_some() => Err(Diagnostic::error(
            Code::SqlSyntax,
            "an alias (`AS name`) is not allowed here",
        )
        .at(text.file, text.span.clone(), "")
        .help("the metric's or column's name is its key in the YAML")),
        Ok(e) => {
            let depth = depth(&e.expr);
            if depth > MAX_DEPTH {
                return Err(Diagnostic::error(
                    Code::SqlSyntax,
                    format!(
                        "this expression is {depth} operations deep; kpi takes at most {MAX_DEPTH}"
                    ),
                )
                .at(text.file, text.span.clone(), "")
                .note("a chain `a + b + c + …` is as deep as it is long")
                .help("split it into metrics that reference each other"));
            }
            Ok(Sql {
                text: text.clone(),
                ast: e.expr,
            })
        }
        Err(e) => Err(syntax_error(text, &e.to_string())),
    }
}

/// How deep an expression tree may be. The parser bounds nesting (parentheses, calls) at
/// 64, but not a chain of operators, which it builds in a loop; every later stage
/// (planning, optimizing, unparsing) walks the tree recursively, and a chain of ten
/// thousand terms overflows their stacks.
pub const MAX_DEPTH: usize = 256;

/// The depth of `e`'s tree.
pub fn depth(e: &Expr) -> usize {
    use std::ops::ControlFlow;
    struct Depth {
        now: usize,
        max: usize,
    }
    impl ast::Visitor for Depth {
        type Break = ();
        fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
            self.now += 1;
            self.max = self.max.max(self.now);
            ControlFlow::Continue(())
        }
        fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
            self.now -= 1;
            ControlFlow::Continue(())
        }
    }
    let mut d = Depth { now: 0, max: 0 };
    let _ = ast::Visit::visit(e, &mut d);
    d.max
}

/// Parses a SQL query (a model's `sql:`).
pub fn parse_query(text: &Text) -> Result<Box<ast::Query>, Diagnostic> {
    let parsed = DFParserBuilder::new(text.value.as_str())
        .with_recursion_limit(64)
        .build()
        .and_then(|mut p| p.parse_statements());
    let err = |msg: &str| {
        Diagnostic::error(Code::SqlSyntax, msg.to_string()).at(text.file, text.span.clone(), "")
    };
    let mut statements = parsed.map_err(|e| syntax_error(text, &e.to_string()))?;
    if statements.len() != 1 {
        return Err(err("a model's `sql` holds exactly one SELECT statement"));
    }
    match statements.pop_front() {
        Some(datafusion::sql::parser::Statement::Statement(s)) => match *s {
            ast::Statement::Query(q) => Ok(q),
            _ => Err(err("a model's `sql` must be a query (SELECT …)")),
        },
        _ => Err(err("a model's `sql` must be a query (SELECT …)")),
    }
}

/// Turns a parser error message (`… at Line: 2, Column: 7`) into a diagnostic at that spot.
fn syntax_error(text: &Text, message: &str) -> Diagnostic {
    let message = message
        .trim_start_matches("SQL error: ")
        .trim_start_matches("ParserError(\"")
        .trim_start_matches("TokenizerError(\"")
        .trim_end_matches("\", None)")
        .trim_end_matches("\")")
        .to_string();
    let (clean, pos) = match message.rfind(" at Line: ") {
        Some(i) => {
            let tail = &message[i + " at Line: ".len()..];
            let mut parts = tail.split(", Column: ");
            let line = parts.next().and_then(|l| l.trim().parse::<u64>().ok());
            let col = parts.next().and_then(|c| {
                c.trim()
                    .trim_end_matches(|c: char| !c.is_ascii_digit())
                    .parse::<u64>()
                    .ok()
            });
            (message[..i].to_string(), line.zip(col))
        }
        None => (message.clone(), None),
    };
    let clean = clean.replace("sql parser error: ", "");
    let clean = if clean.contains("RecursionLimitExceeded") {
        "the expression nests deeper than 64 levels of parentheses or calls".to_string()
    } else {
        clean
    };
    let span = match pos {
        Some((l, c)) => {
            let at = text.offset_of(l, c);
            // the whole offending token when it is a word, else its first character
            let rest = &text.value[at..];
            let word = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let end = if word > 0 {
                at + word
            } else {
                rest.chars().next().map_or(at, |ch| at + ch.len_utf8())
            };
            let fs = text.file_span(at..end);
            if fs.is_empty() {
                fs.start..fs.start + 1
            } else {
                fs
            }
        }
        None => text.span.clone(),
    };
    Diagnostic::error(Code::SqlSyntax, format!("SQL syntax error: {clean}")).at(text.file, span, "")
}

/// Names of every aggregate function DataFusion knows, lowercased, aliases included.
pub static AGGREGATES: LazyLock<HashSet<String>> = LazyLock::new(|| {
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_default_features()
        .build();
    let mut names = HashSet::new();
    for (name, f) in state.aggregate_functions() {
        names.insert(name.to_ascii_lowercase());
        for a in f.aliases() {
            names.insert(a.to_ascii_lowercase());
        }
    }
    names
});

/// Whether `name` is an aggregate function.
pub fn is_aggregate(name: &str) -> bool {
    AGGREGATES.contains(&name.to_ascii_lowercase())
}

/// The lowercased last part of a function's name.
pub fn function_name(f: &ast::Function) -> String {
    match f.name.0.last() {
        Some(ObjectNamePart::Identifier(i)) => i.value.to_ascii_lowercase(),
        _ => f.name.to_string().to_ascii_lowercase(),
    }
}

/// A column reference: its name parts (`["customers", "segment"]`) and where it is.
#[derive(Debug, Clone)]
pub struct ColumnRef {
    pub parts: Vec<String>,
    pub span: Span,
    /// Whether it sits inside an aggregate call (argument or FILTER clause).
    pub in_aggregate: bool,
}

/// A function call found in an expression.
#[derive(Debug, Clone)]
pub struct Call {
    pub name: String,
    pub span: Span,
    pub aggregate: bool,
    /// Inside another aggregate's arguments.
    pub nested: bool,
    pub distinct: bool,
    pub args: Vec<Expr>,
    pub has_over: bool,
}

/// Everything the checks need to know about an expression, in one walk.
#[derive(Debug, Default)]
pub struct Facts {
    pub columns: Vec<ColumnRef>,
    pub calls: Vec<Call>,
    pub placeholders: Vec<(String, Span)>,
    pub subqueries: Vec<Span>,
}

impl Facts {
    pub fn of(e: &Expr) -> Facts {
        let mut v = FactVisitor {
            facts: Facts::default(),
            depth: 0,
            stack: Vec::new(),
        };
        let _ = e.visit(&mut v);
        v.facts
    }

    pub fn has_aggregate(&self) -> bool {
        self.calls.iter().any(|c| c.aggregate)
    }
}

struct FactVisitor {
    facts: Facts,
    depth: usize,
    stack: Vec<bool>,
}

impl Visitor for FactVisitor {
    type Break = ();

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        let mut agg = false;
        match e {
            Expr::Identifier(i) => self.facts.columns.push(ColumnRef {
                parts: vec![i.value.clone()],
                span: i.span,
                in_aggregate: self.depth > 0,
            }),
            Expr::CompoundIdentifier(parts) => self.facts.columns.push(ColumnRef {
                parts: parts.iter().map(|i| i.value.clone()).collect(),
                span: e.span(),
                in_aggregate: self.depth > 0,
            }),
            Expr::Value(v) => {
                if let Value::Placeholder(p) = &v.value {
                    self.facts.placeholders.push((p.clone(), v.span));
                }
            }
            Expr::Subquery(q)
            | Expr::Exists { subquery: q, .. }
            | Expr::InSubquery { subquery: q, .. } => {
                self.facts.subqueries.push(q.span());
            }
            Expr::Function(f) => {
                let name = function_name(f);
                agg = is_aggregate(&name) && f.over.is_none();
                let (distinct, args) = match &f.args {
                    FunctionArguments::List(l) => (
                        matches!(
                            l.duplicate_treatment,
                            Some(ast::DuplicateTreatment::Distinct)
                        ),
                        l.args
                            .iter()
                            .filter_map(|a| match a {
                                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
                                FunctionArg::Named {
                                    arg: FunctionArgExpr::Expr(e),
                                    ..
                                } => Some(e.clone()),
                                _ => None,
                            })
                            .collect(),
                    ),
                    _ => (false, vec![]),
                };
                self.facts.calls.push(Call {
                    name,
                    span: f.name.span(),
                    aggregate: agg,
                    nested: self.depth > 0,
                    distinct,
                    args,
                    has_over: f.over.is_some(),
                });
            }
            _ => {}
        }
        if agg {
            self.depth += 1;
        }
        self.stack.push(agg);
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _e: &Expr) -> ControlFlow<()> {
        if self.stack.pop() == Some(true) {
            self.depth -= 1;
        }
        ControlFlow::Continue(())
    }
}

/// Replaces every `$name` placeholder by `f(name)`, an expression to put in its place.
pub fn replace_placeholders(e: &mut Expr, f: &dyn Fn(&str) -> Option<Expr>) {
    let _ = ast::visit_expressions_mut(e, |x| {
        if let Expr::Value(v) = x
            && let Value::Placeholder(p) = &v.value
            && let Some(new) = f(p)
        {
            *x = new;
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Qualifies bare column names with `qualifier` when `owns(name)` says the column is the
/// qualifier's: unqualified names resolve to the metric's own source first.
pub fn qualify(e: &mut Expr, qualifier: &str, owns: &dyn Fn(&str) -> bool) {
    let _ = ast::visit_expressions_mut(e, |x| {
        if let Expr::Identifier(i) = x
            && owns(&i.value)
        {
            let span = i.span;
            *x = Expr::CompoundIdentifier(vec![Ident::with_span(span, qualifier), i.clone()]);
        }
        ControlFlow::<()>::Continue(())
    });
}

/// An identifier expression with a span, for synthesized ASTs.
pub fn ident(name: &str) -> Expr {
    Expr::Identifier(Ident::new(name))
}

/// `relation.column` as an expression.
pub fn compound(relation: &str, column: &str) -> Expr {
    Expr::CompoundIdentifier(vec![Ident::new(relation), Ident::new(column)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::FileId;

    fn t(s: &str) -> Text {
        Text::synthetic(FileId(0), s, 0..0)
    }

    #[test]
    fn a_call_spans_its_arguments_and_filter() {
        let src = "100 * count(*) filter (where s = ')') / count ( distinct x ) + max(y)";
        let text = Text::from_scalar(
            FileId(0),
            src,
            src,
            crate::spec::yaml::Style::Plain,
            0..src.len(),
        );
        let sql = parse_expr(&text).unwrap();
        let spans: Vec<&str> = Facts::of(&sql.ast)
            .calls
            .iter()
            .map(|c| &src[sql.call_span(c.span)])
            .collect();
        assert_eq!(
            spans,
            [
                "count(*) filter (where s = ')')",
                "count ( distinct x )",
                "max(y)"
            ]
        );
    }

    #[test]
    fn facts_find_aggregates_columns_and_placeholders() {
        let sql = parse_expr(&t(
            "100 * count(*) filter (where x > 0) / sum(amount) + y - $start",
        ))
        .unwrap();
        let f = Facts::of(&sql.ast);
        assert!(f.has_aggregate());
        let outside: Vec<_> = f
            .columns
            .iter()
            .filter(|c| !c.in_aggregate)
            .map(|c| c.parts.join("."))
            .collect();
        assert_eq!(outside, vec!["y"]);
        assert_eq!(f.placeholders.len(), 1);
        assert_eq!(f.placeholders[0].0, "$start");
    }

    #[test]
    fn syntax_errors_point_into_the_snippet() {
        let src = "formula: sum(amount) +* 2\n";
        let text = Text::from_scalar(
            FileId(0),
            src,
            "sum(amount) +* 2",
            crate::spec::yaml::Style::Plain,
            9..25,
        );
        let d = parse_expr(&text).unwrap_err();
        let p = d.primary.unwrap();
        assert_eq!(&src[p.span.clone()], "*", "{}", d.message);
    }
}
