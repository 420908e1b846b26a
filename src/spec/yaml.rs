//! YAML documents as an owned tree with a byte span on every node.
//!
//! Parsing is saphyr's (a maintained YAML 1.2 parser that marks every node with its position
//! and reports duplicate keys); this module converts its character-indexed markers into byte
//! ranges once, and keeps each scalar's style so that text inside a scalar — a SQL formula —
//! can be mapped back to the exact bytes of the file ([`Text::file_span`]).

use std::ops::Range;
use std::sync::Arc;

use saphyr::{MarkedYaml, ScalarStyle, YamlData, YamlLoader};
use saphyr_parser::Parser;

use crate::diag::{Code, Diagnostic, FileId};

/// A YAML node with the byte range it occupies in its file.
#[derive(Debug, Clone)]
pub struct Node {
    pub span: Range<usize>,
    pub kind: NodeKind,
}

#[derive(Debug, Clone)]
pub enum NodeKind {
    /// A scalar: its value after YAML unescaping/folding, and its style.
    Scalar(String, Style),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
    /// An empty document or an explicit null (`~`, `null`, nothing).
    Null,
}

/// How a scalar was written; decides how its value maps back to the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

impl Node {
    /// A short name for the node's type, for "expected a string, found a list" messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar(..) => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
            NodeKind::Null => "nothing (null)",
        }
    }
}

/// Parses the single YAML document of a file. An empty file yields [`NodeKind::Null`].
pub fn parse(file: FileId, text: &str) -> Result<Node, Diagnostic> {
    let chars = CharOffsets::new(text);
    let mut loader: YamlLoader<'_, MarkedYaml<'_>> = YamlLoader::default();
    loader.early_parse(false);
    loader.alias_limit(10_000);
    let mut parser = Parser::new_from_str(text);
    let result = parser.load(&mut loader, true);
    let error = result.err().or_else(|| loader.error().cloned());
    if let Some(e) = error {
        let at = chars.byte(e.marker().index());
        let end = next_char_end(text, at);
        return Err(
            Diagnostic::error(Code::YamlSyntax, format!("invalid YAML: {}", e.info())).at(
                file,
                at..end,
                "",
            ),
        );
    }
    let docs = loader.into_documents();
    if docs.len() > 1 {
        let second = &docs[1];
        let at = chars.byte(second.span.start.index());
        return Err(
            Diagnostic::error(Code::YamlSyntax, "a metric file holds one YAML document")
                .at(
                    file,
                    at..next_char_end(text, at),
                    "a second document starts here",
                )
                .help("split the documents into one file each"),
        );
    }
    Ok(match docs.into_iter().next() {
        Some(doc) => convert(&doc, &chars, text),
        None => Node {
            span: 0..0,
            kind: NodeKind::Null,
        },
    })
}

fn next_char_end(text: &str, at: usize) -> usize {
    text[at.min(text.len())..]
        .chars()
        .next()
        .map_or(at, |c| at + c.len_utf8())
}

fn convert(node: &MarkedYaml<'_>, chars: &CharOffsets, text: &str) -> Node {
    let span = chars.byte(node.span.start.index())..chars.byte(node.span.end.index());
    let kind = match &node.data {
        YamlData::Representation(value, style, _tag) => {
            let style = match style {
                ScalarStyle::Plain => Style::Plain,
                ScalarStyle::SingleQuoted => Style::SingleQuoted,
                ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
                ScalarStyle::Literal => Style::Literal,
                ScalarStyle::Folded => Style::Folded,
            };
            if style == Style::Plain
                && matches!(value.as_ref(), "" | "~" | "null" | "Null" | "NULL")
            {
                NodeKind::Null
            } else {
                NodeKind::Scalar(value.to_string(), style)
            }
        }
        YamlData::Value(v) => NodeKind::Scalar(format!("{v:?}"), Style::Plain),
        YamlData::Sequence(items) => {
            NodeKind::Seq(items.iter().map(|i| convert(i, chars, text)).collect())
        }
        YamlData::Mapping(map) => NodeKind::Map(
            map.iter()
                .map(|(k, v)| (convert(k, chars, text), convert(v, chars, text)))
                .collect(),
        ),
        YamlData::Tagged(_, inner) => return convert(inner, chars, text),
        YamlData::Alias(_) | YamlData::BadValue => NodeKind::Null,
    };
    let mut span = span;
    if span.end < span.start {
        span.end = span.start;
    }
    // Block scalars end after their trailing line breaks; a caret at the end looks better
    // on the last content character.
    while span.end > span.start
        && text
            .as_bytes()
            .get(span.end - 1)
            .is_some_and(|b| b.is_ascii_whitespace())
    {
        span.end -= 1;
    }
    Node { span, kind }
}

/// Byte offset of every character index, since saphyr's markers count characters.
struct CharOffsets {
    offsets: Vec<usize>,
}

impl CharOffsets {
    fn new(text: &str) -> Self {
        let mut offsets: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        offsets.push(text.len());
        CharOffsets { offsets }
    }

    fn byte(&self, char_index: usize) -> usize {
        self.offsets
            .get(char_index)
            .copied()
            .unwrap_or(*self.offsets.last().unwrap_or(&0))
    }
}

/// A scalar's text, with the way back to the file: the byte offset in the file of every
/// character of the value.
///
/// SQL parsers report positions inside the value; [`Text::file_span`] turns them into a
/// range of the YAML file, through quotes, escapes, block indentation and line folding.
#[derive(Debug, Clone)]
pub struct Text {
    pub value: String,
    pub file: FileId,
    /// The whole scalar in the file.
    pub span: Range<usize>,
    /// `map[i]` = file byte offset of the value's `i`-th character; one extra entry for the end.
    map: Arc<[usize]>,
}

impl Text {
    /// Builds the text of scalar `node` of `file`, whose contents are `source`.
    pub fn from_scalar(
        file: FileId,
        source: &str,
        value: &str,
        style: Style,
        span: Range<usize>,
    ) -> Text {
        let map = align(source, value, style, span.clone());
        Text {
            value: value.to_string(),
            file,
            span,
            map: map.into(),
        }
    }

    /// A text that does not come from a file position (built-in or synthesized).
    pub fn synthetic(file: FileId, value: impl Into<String>, at: Range<usize>) -> Text {
        let value = value.into();
        let n = value.chars().count();
        let map: Vec<usize> = std::iter::repeat_n(at.start, n + 1).collect();
        Text {
            value,
            file,
            span: at,
            map: map.into(),
        }
    }

    /// The file range of the value's byte range `r`.
    pub fn file_span(&self, r: Range<usize>) -> Range<usize> {
        let to_char = |b: usize| self.value[..b.min(self.value.len())].chars().count();
        let (s, e) = (to_char(r.start), to_char(r.end.max(r.start)));
        let start = self.map[s.min(self.map.len() - 1)];
        let end = if e > s {
            // end of the last character of the range
            let last = self.map[(e - 1).min(self.map.len() - 1)];
            let ch = self.value.chars().nth(e - 1).map_or(1, char::len_utf8);
            (last + ch).max(start)
        } else {
            start
        };
        start..end
    }

    /// The byte offset in the value of a 1-based line and 1-based character column, as SQL
    /// parsers report them.
    pub fn offset_of(&self, line: u64, column: u64) -> usize {
        let mut offset = 0;
        for (i, l) in self.value.split_inclusive('\n').enumerate() {
            if i as u64 + 1 == line {
                let col = column.saturating_sub(1) as usize;
                return offset + l.char_indices().nth(col).map_or(l.len(), |(b, _)| b);
            }
            offset += l.len();
        }
        self.value.len()
    }

    /// The file range of a sqlparser span (`line:column` pairs inside the value).
    pub fn sql_span(&self, start: (u64, u64), end: (u64, u64)) -> Range<usize> {
        if start.0 == 0 {
            return self.span.clone();
        }
        let s = self.offset_of(start.0, start.1);
        let e = if end.0 == 0 {
            s
        } else {
            self.offset_of(end.0, end.1).max(s)
        };
        self.file_span(s..e)
    }
}

/// Aligns the value's characters with the raw scalar in the source: each value character is
/// matched to the next source character equal to it, skipping what YAML removed (quotes,
/// escape backslashes, indentation). Folded line breaks match any white space.
fn align(source: &str, value: &str, style: Style, span: Range<usize>) -> Vec<usize> {
    let raw_end = span.end.min(source.len());
    let mut start = span.start.min(raw_end);
    match style {
        Style::SingleQuoted | Style::DoubleQuoted => start = (start + 1).min(raw_end),
        // saphyr starts block scalars at their first content character
        Style::Literal | Style::Folded | Style::Plain => {}
    }
    let raw: Vec<(usize, char)> = source[start..raw_end]
        .char_indices()
        .map(|(i, c)| (i + start, c))
        .collect();
    let mut map = Vec::with_capacity(value.len() + 1);
    let mut p = 0;
    for v in value.chars() {
        if v.is_whitespace() {
            if p < raw.len() && raw[p].1.is_whitespace() {
                map.push(raw[p].0);
                p += 1;
            } else {
                map.push(raw.get(p).map_or(raw_end, |r| r.0));
            }
            continue;
        }
        let mut q = p;
        while q < raw.len() && raw[q].1 != v {
            q += 1;
        }
        if q < raw.len() {
            map.push(raw[q].0);
            p = q + 1;
        } else {
            map.push(raw.get(p).map_or(raw_end, |r| r.0));
        }
    }
    map.push(raw.get(p).map_or(raw_end, |r| r.0));
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(src: &str) -> Text {
        let node = parse(FileId(0), src).unwrap();
        let NodeKind::Map(entries) = node.kind else {
            panic!("not a map")
        };
        let (_, v) = &entries[0];
        let NodeKind::Scalar(value, style) = &v.kind else {
            panic!("not a scalar")
        };
        Text::from_scalar(FileId(0), src, value, *style, v.span.clone())
    }

    /// The file text under the file span of `needle` in the value.
    fn back(src: &str, t: &Text, needle: &str) -> String {
        let at = t.value.find(needle).unwrap();
        src[t.file_span(at..at + needle.len())].to_string()
    }

    #[test]
    fn plain_scalar_maps_one_to_one() {
        let src = "formula: sum(amout) / 2\n";
        let t = text_of(src);
        assert_eq!(back(src, &t, "amout"), "amout");
        assert_eq!(t.file_span(4..9), 13..18);
    }

    #[test]
    fn block_literal_maps_through_indentation() {
        let src = "formula: |\n  sum(a)\n    / count(bad_col)\n";
        let t = text_of(src);
        assert_eq!(t.value, "sum(a)\n  / count(bad_col)\n");
        assert_eq!(back(src, &t, "bad_col"), "bad_col");
        let at = src.find("bad_col").unwrap();
        assert_eq!(
            t.file_span(t.value.find("bad_col").unwrap()..t.value.find("bad_col").unwrap() + 7),
            at..at + 7
        );
        // line 2, column 11 in the value is `bad_col`
        assert_eq!(t.offset_of(2, 11), t.value.find("bad_col").unwrap());
    }

    #[test]
    fn folded_and_quoted_scalars() {
        let src = "f: >\n  sum(x)\n  filter (where y)\n";
        let t = text_of(src);
        assert_eq!(t.value, "sum(x) filter (where y)\n");
        assert_eq!(back(src, &t, "where"), "where");
        let src = "f: 'it''s '' || nme'\n";
        let t = text_of(src);
        assert_eq!(t.value, "it's ' || nme");
        assert_eq!(back(src, &t, "nme"), "nme");
        let src = "f: \"a \\\"b\\\" ünï\"\n";
        let t = text_of(src);
        assert_eq!(back(src, &t, "ünï"), "ünï");
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse(FileId(0), "a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(err.code, crate::diag::Code::YamlSyntax);
        assert!(err.primary.is_some());
        let err = parse(FileId(0), "a: 1\na: 2\n").unwrap_err();
        assert!(err.message.contains("duplicate"), "{}", err.message);
    }
}
