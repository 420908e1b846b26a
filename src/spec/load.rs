//! Reading a metrics directory and turning each YAML tree into a [`MetricSpec`] or
//! [`ModelSpec`], reporting every structural fault (unknown key, wrong type, missing key,
//! bad enumeration value) with its position. One broken file never hides another's errors.

use std::path::{Path, PathBuf};

use super::model::*;
use super::yaml::{self, Node, NodeKind, Text};
use crate::diag::{Code, Diagnostic, FileId, SourceDb, did_you_mean};

/// Keys of a metric file.
pub const METRIC_KEYS: &[&str] = &[
    "name",
    "description",
    "unit",
    "owner",
    "tags",
    "source",
    "formula",
    "filter",
    "filters",
    "time",
    "at",
    "window",
    "grain",
    "entity",
    "entity_columns",
    "lookups",
    "dimensions",
    "empty",
    "using",
];
/// Keys of a model file (a file with `table:` or `sql:`).
pub const MODEL_KEYS: &[&str] = &[
    "name",
    "description",
    "owner",
    "tags",
    "table",
    "sql",
    "key",
    "time",
    "joins",
    "dimensions",
    "active",
    "columns",
];
/// Keys of a lookup under `lookups:`.
pub(crate) const LOOKUP_KEYS: &[&str] = &["from", "on", "value"];
/// Keys of a join under `joins:`.
pub(crate) const JOIN_KEYS: &[&str] = &["on", "relationship"];

/// Loads every `*.yaml`/`*.yml` file under `dir`, recursively, in path order, except those
/// under a `tests` folder, which hold metric unit tests.
///
/// Files are added to `db`; structural faults go to `diags`. A missing or unreadable
/// directory is an `Err` (nothing could be checked); a broken file is a diagnostic.
pub fn load_dir(
    dir: &Path,
    db: &mut SourceDb,
    diags: &mut Vec<Diagnostic>,
) -> Result<Specs, std::io::Error> {
    let mut paths = Vec::new();
    collect(dir, &mut paths)?;
    paths.sort();
    let mut specs = Specs::default();
    for path in paths {
        let shown = display_path(&path);
        match read_bounded(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => {
                    let id = db.add(shown, text);
                    load_file(db, id, &mut specs, diags);
                }
                Err(e) => {
                    // The valid prefix survives the lossy copy byte for byte, so the bad
                    // byte's offset there is its offset in the file.
                    let at = e.utf8_error().valid_up_to();
                    let bad = e.as_bytes()[at];
                    let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
                    let end = at + text[at..].chars().next().map_or(0, char::len_utf8);
                    let id = db.add(shown, text);
                    diags.push(
                        Diagnostic::error(Code::Io, "a metric file must be UTF-8").at(
                            id,
                            at..end,
                            format!("byte 0x{bad:02X} is not UTF-8 here"),
                        ),
                    );
                }
            },
            Err(e) => diags.push(Diagnostic::error(
                Code::Io,
                format!("cannot read {}: {e}", shown.display()),
            )),
        }
    }
    Ok(specs)
}

/// The longest metric or model name: PostgreSQL's identifiers stop at 63 bytes, and a name
/// is an output column everywhere.
pub const MAX_NAME_CHARS: usize = 63;

/// The largest metric or model file read: far beyond any definition, and small enough
/// that a stray data file under `metrics/` costs nothing.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The bytes of `path`, or an error when it is larger than [`MAX_FILE_BYTES`] (checked
/// while reading too, since a file can grow after its size was asked).
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let too_big = |n: u64| {
        std::io::Error::other(format!(
            "it holds {n} bytes, and a metric or model file holds at most {MAX_FILE_BYTES} \
             (1 MiB)"
        ))
    };
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > MAX_FILE_BYTES {
        return Err(too_big(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// `p` relative to the working directory when it is inside it, as diagnostics show paths.
pub(crate) fn display_path(p: &Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| p.strip_prefix(&cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| p.to_path_buf())
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), std::io::Error> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if entry.file_type()?.is_dir() {
            // Metric unit tests live beside the metrics (`kpi test` reads them).
            if name == "tests" {
                continue;
            }
            collect(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// Parses one file already in `db` and adds what it defines to `specs`.
pub fn load_file(db: &SourceDb, file: FileId, specs: &mut Specs, diags: &mut Vec<Diagnostic>) {
    let src = db.file(file);
    let stem = src
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let node = match yaml::parse(file, &src.text) {
        Ok(n) => n,
        Err(d) => {
            diags.push(d);
            return;
        }
    };
    let mut cx = Cx {
        file,
        text: &src.text,
        diags,
    };
    let NodeKind::Map(entries) = &node.kind else {
        let span = if node.span.is_empty() {
            0..src.text.len().min(1)
        } else {
            node.span.clone()
        };
        cx.diags.push(
            Diagnostic::error(
                Code::ExpectedMapping,
                format!(
                    "a metric file must be a mapping of keys, found {}",
                    node.type_name()
                ),
            )
            .at(file, span, "")
            .help("start with `formula:` (a metric) or `table:`/`sql:` (a model)"),
        );
        return;
    };
    let is_model = entries
        .iter()
        .any(|(k, _)| matches!(&k.kind, NodeKind::Scalar(s, _) if s == "table" || s == "sql"));
    let mut map = MapReader::new(entries, node.span.clone());
    let default_name = Spanned::new(stem, 0..0);
    if is_model {
        if let Some(m) = cx.model(&mut map, default_name) {
            specs.models.push(m);
        }
    } else if let Some(m) = cx.metric(&mut map, default_name, false) {
        specs.metrics.push(m);
    }
}

/// A mapping being read: remembers which keys were taken so the rest can be reported.
struct MapReader<'n> {
    entries: Vec<(&'n Node, &'n Node, bool)>,
    span: std::ops::Range<usize>,
}

impl<'n> MapReader<'n> {
    fn new(entries: &'n [(Node, Node)], span: std::ops::Range<usize>) -> Self {
        MapReader {
            entries: entries.iter().map(|(k, v)| (k, v, false)).collect(),
            span,
        }
    }

    fn take(&mut self, key: &str) -> Option<(&'n Node, &'n Node)> {
        self.entries
            .iter_mut()
            .find_map(|(k, v, used)| match &k.kind {
                NodeKind::Scalar(s, _) if s == key && !*used => {
                    *used = true;
                    Some((*k, *v))
                }
                _ => None,
            })
    }

    /// Span of the first key of the mapping (to point at "this mapping" in messages).
    fn head(&self) -> std::ops::Range<usize> {
        self.entries
            .first()
            .map_or(self.span.clone(), |(k, _, _)| k.span.clone())
    }
}

struct Cx<'a> {
    file: FileId,
    text: &'a str,
    diags: &'a mut Vec<Diagnostic>,
}

impl Cx<'_> {
    fn err(
        &mut self,
        code: Code,
        message: impl Into<String>,
        node: &Node,
        label: impl Into<String>,
    ) {
        let span = if node.span.is_empty() {
            node.span.start..node.span.start + 1
        } else {
            node.span.clone()
        };
        let span = span.start.min(self.text.len())..span.end.min(self.text.len());
        self.diags
            .push(Diagnostic::error(code, message).at(self.file, span, label));
    }

    /// Reports keys nobody took, suggesting the closest known key.
    fn finish(&mut self, map: MapReader<'_>, known: &[&str], what: &str) {
        self.finish_suggesting(map, known, known, what);
    }

    /// Like [`Cx::finish`], suggesting from `suggest` (a superset) while listing `known`.
    fn finish_suggesting(
        &mut self,
        map: MapReader<'_>,
        known: &[&str],
        suggest: &[&str],
        what: &str,
    ) {
        for (k, _, used) in map.entries {
            if used {
                continue;
            }
            let name = match &k.kind {
                NodeKind::Scalar(s, _) => s.clone(),
                _ => {
                    self.err(
                        Code::BadKey,
                        format!("keys of {what} must be plain names"),
                        k,
                        "",
                    );
                    continue;
                }
            };
            let help = did_you_mean(&name, suggest.iter().copied());
            let d = Diagnostic::error(Code::UnknownKey, format!("unknown key `{name}` in {what}"))
                .at(
                    self.file,
                    k.span.clone(),
                    help.clone().unwrap_or_else(|| "unknown key".into()),
                )
                .note(format!("known keys: {}", known.join(", ")));
            self.diags.push(if help.is_some() {
                d
            } else {
                d.help("remove it, or check the spelling against the keys above")
            });
        }
    }

    fn require<'n>(&mut self, map: &mut MapReader<'n>, key: &str, what: &str) -> Option<&'n Node> {
        match map.take(key) {
            Some((_, v)) => Some(v),
            None => {
                let head = map.head();
                self.diags.push(
                    Diagnostic::error(Code::MissingKey, format!("{what} has no `{key}`")).at(
                        self.file,
                        head,
                        format!("`{key}` is required here"),
                    ),
                );
                None
            }
        }
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<Spanned<String>> {
        match &node.kind {
            NodeKind::Scalar(s, _) => Some(Spanned::new(s.trim().to_string(), node.span.clone())),
            _ => {
                self.err(
                    Code::WrongType,
                    format!("`{what}` must be a string, found {}", node.type_name()),
                    node,
                    "expected a string",
                );
                None
            }
        }
    }

    fn text(&mut self, node: &Node, what: &str) -> Option<Text> {
        match &node.kind {
            NodeKind::Scalar(s, style) => Some(Text::from_scalar(
                self.file,
                self.text,
                s,
                *style,
                node.span.clone(),
            )),
            _ => {
                self.err(
                    Code::WrongType,
                    format!("`{what}` must be a SQL string, found {}", node.type_name()),
                    node,
                    "expected SQL text",
                );
                None
            }
        }
    }

    /// A string, or a list of strings.
    fn texts(&mut self, node: &Node, what: &str) -> Vec<Text> {
        match &node.kind {
            NodeKind::Seq(items) => items.iter().filter_map(|i| self.text(i, what)).collect(),
            NodeKind::Null => Vec::new(),
            _ => self.text(node, what).into_iter().collect(),
        }
    }

    fn strings(&mut self, node: &Node, what: &str) -> Vec<Spanned<String>> {
        match &node.kind {
            NodeKind::Seq(items) => items.iter().filter_map(|i| self.string(i, what)).collect(),
            NodeKind::Null => Vec::new(),
            _ => self.string(node, what).into_iter().collect(),
        }
    }

    fn mapping<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [(Node, Node)]> {
        match &node.kind {
            NodeKind::Map(e) => Some(e),
            NodeKind::Null => Some(&[]),
            _ => {
                self.err(
                    Code::WrongType,
                    format!("`{what}` must be a mapping, found {}", node.type_name()),
                    node,
                    "expected `name: value` entries",
                );
                None
            }
        }
    }

    fn enumerated<T>(
        &mut self,
        node: &Node,
        what: &str,
        parse: impl Fn(&str) -> Option<T>,
        names: &[&str],
    ) -> Option<Spanned<T>> {
        let s = self.string(node, what)?;
        match parse(&s.value) {
            Some(v) => Some(Spanned::new(v, s.span)),
            None => {
                let help = did_you_mean(&s.value, names.iter().copied());
                self.diags.push(
                    Diagnostic::error(
                        if what == "grain" {
                            Code::BadGrain
                        } else {
                            Code::BadValue
                        },
                        format!("`{}` is not a valid {what}", s.value),
                    )
                    .at(
                        self.file,
                        s.span,
                        help.clone()
                            .unwrap_or_else(|| format!("expected one of: {}", names.join(", "))),
                    )
                    .note(format!("valid values: {}", names.join(", "))),
                );
                None
            }
        }
    }

    fn name_from(&mut self, map: &mut MapReader<'_>, default: Spanned<String>) -> Spanned<String> {
        let name = map
            .take("name")
            .and_then(|(_, v)| self.string(v, "name"))
            .unwrap_or(default);
        let too_long = name.value.chars().count() > MAX_NAME_CHARS;
        if !name.value.is_empty() && (too_long || !is_identifier(&name.value)) {
            let span = if name.span.is_empty() {
                0..0
            } else {
                name.span.clone()
            };
            let d = if too_long {
                Diagnostic::error(
                    Code::BadName,
                    format!(
                        "a name of {} characters is too long; names have at most {MAX_NAME_CHARS}",
                        name.value.chars().count()
                    ),
                )
                .help("names become output column names and SQL identifiers: keep them short")
            } else {
                Diagnostic::error(Code::BadName, format!("`{}` is not a valid name", name.value))
                .help("names are letters, digits and `_`, starting with a letter or `_` (rename the file or set `name:`)")
            };
            self.diags.push(if span.is_empty() {
                d
            } else {
                d.at(self.file, span, "")
            });
        }
        name
    }

    fn model(
        &mut self,
        map: &mut MapReader<'_>,
        default_name: Spanned<String>,
    ) -> Option<ModelSpec> {
        let name = self.name_from(map, default_name);
        let description = map
            .take("description")
            .and_then(|(_, v)| self.string(v, "description"))
            .map(|s| s.value);
        map.take("owner");
        map.take("tags");
        let table = map.take("table").and_then(|(_, v)| self.string(v, "table"));
        let sql = map.take("sql").and_then(|(_, v)| self.text(v, "sql"));
        if let (Some(t), Some(_)) = (&table, &sql) {
            self.diags.push(
                Diagnostic::error(
                    Code::ConflictingKeys,
                    "a model has either `table` or `sql`, not both",
                )
                .at(self.file, t.span.clone(), "remove one of them"),
            );
        }
        let key = map
            .take("key")
            .map(|(_, v)| self.strings(v, "key"))
            .unwrap_or_default();
        let time = map.take("time").and_then(|(_, v)| self.text(v, "time"));
        let joins = map
            .take("joins")
            .map(|(_, v)| self.joins(v))
            .unwrap_or_default();
        let dimensions = map
            .take("dimensions")
            .map(|(_, v)| self.dimensions(v))
            .unwrap_or_default();
        let active = map.take("active").and_then(|(_, v)| self.text(v, "active"));
        let columns = map
            .take("columns")
            .map(|(_, v)| self.column_types(v))
            .unwrap_or_default();
        let span = map.span.clone();
        self.finish(
            std::mem::replace(
                map,
                MapReader {
                    entries: vec![],
                    span,
                },
            ),
            MODEL_KEYS,
            "a model",
        );
        Some(ModelSpec {
            file: self.file,
            name,
            description,
            table,
            sql,
            key,
            time,
            joins,
            dimensions,
            active,
            columns,
        })
    }

    fn column_types(&mut self, node: &Node) -> Vec<(Spanned<String>, Spanned<ColumnType>)> {
        let Some(entries) = self.mapping(node, "columns") else {
            return vec![];
        };
        let mut out: Vec<(Spanned<String>, Spanned<ColumnType>)> = Vec::new();
        for (k, v) in entries {
            let (Some(name), Some(ty)) = (
                self.string(k, "column name"),
                self.enumerated(v, "column type", ColumnType::parse, &ColumnType::NAMES),
            ) else {
                continue;
            };
            out.push((name, ty));
        }
        out
    }

    fn joins(&mut self, node: &Node) -> Vec<JoinSpec> {
        let Some(entries) = self.mapping(node, "joins") else {
            return vec![];
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let Some(target) = self.string(k, "join target") else {
                continue;
            };
            let Some(body) = self.mapping(v, "join") else {
                continue;
            };
            let mut m = MapReader::new(body, v.span.clone());
            let on = match m.take("on") {
                Some((_, on)) => match &on.kind {
                    NodeKind::Seq(_) => Some(JoinOn::Columns(self.strings(on, "on"))),
                    NodeKind::Scalar(s, _) if is_identifier(s.trim()) => Some(JoinOn::Columns(
                        vec![Spanned::new(s.trim().to_string(), on.span.clone())],
                    )),
                    _ => self.text(on, "on").map(JoinOn::Condition),
                },
                None => {
                    self.err(
                        Code::MissingKey,
                        format!("the join to `{}` has no `on`", target.value),
                        k,
                        "`on` is required here",
                    );
                    None
                }
            };
            let relationship = match m.take("relationship") {
                Some((_, r)) => {
                    self.enumerated(r, "relationship", Relationship::parse, &Relationship::NAMES)
                }
                None => {
                    self.diags.push(
                        Diagnostic::error(Code::MissingKey, format!("the join to `{}` has no `relationship`", target.value))
                            .at(self.file, k.span.clone(), "declare how many rows match")
                            .help("add `relationship: many_to_one` (each row matches at most one row of the target), `one_to_one` or `one_to_many`"),
                    );
                    None
                }
            };
            self.finish(m, JOIN_KEYS, "a join");
            if let (Some(on), Some(relationship)) = (on, relationship) {
                out.push(JoinSpec {
                    target,
                    on,
                    relationship,
                    span: k.span.start..v.span.end,
                });
            }
        }
        out
    }

    fn dimensions(&mut self, node: &Node) -> Vec<DimensionSpec> {
        let items: Vec<&Node> = match &node.kind {
            NodeKind::Seq(items) => items.iter().collect(),
            NodeKind::Null => vec![],
            _ => vec![node],
        };
        let mut out = Vec::new();
        for item in items {
            match &item.kind {
                NodeKind::Scalar(s, style) => {
                    let name = s
                        .trim()
                        .rsplit('.')
                        .next()
                        .unwrap_or("")
                        .trim_matches('"')
                        .to_string();
                    let expr =
                        Text::from_scalar(self.file, self.text, s, *style, item.span.clone());
                    out.push(DimensionSpec {
                        name: Spanned::new(name, item.span.clone()),
                        expr,
                    });
                }
                NodeKind::Map(entries) => {
                    for (k, v) in entries {
                        if let (Some(name), Some(expr)) =
                            (self.string(k, "dimension name"), self.text(v, "dimension"))
                        {
                            out.push(DimensionSpec { name, expr });
                        }
                    }
                }
                _ => self.err(
                    Code::WrongType,
                    "a dimension is a column name or `name: SQL`",
                    item,
                    "",
                ),
            }
        }
        out
    }

    fn metric(
        &mut self,
        map: &mut MapReader<'_>,
        default_name: Spanned<String>,
        inline: bool,
    ) -> Option<MetricSpec> {
        let span = map.span.clone();
        let name = if inline {
            default_name
        } else {
            self.name_from(map, default_name)
        };
        let description = map
            .take("description")
            .and_then(|(_, v)| self.string(v, "description"))
            .map(|s| s.value);
        let unit = map
            .take("unit")
            .and_then(|(_, v)| self.enumerated(v, "unit", Unit::parse, &Unit::NAMES));
        let owner = map
            .take("owner")
            .and_then(|(_, v)| self.string(v, "owner"))
            .map(|s| s.value);
        let tags = map
            .take("tags")
            .map(|(_, v)| self.strings(v, "tags"))
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.value)
            .collect();
        let source = map
            .take("source")
            .and_then(|(_, v)| self.string(v, "source"));
        let formula = self
            .require(
                map,
                "formula",
                if inline { "this metric" } else { "a metric" },
            )
            .and_then(|v| self.text(v, "formula"));
        let mut filters = Vec::new();
        for key in ["filter", "filters"] {
            if let Some((_, v)) = map.take(key) {
                filters.extend(self.texts(v, key));
            }
        }
        let time = map.take("time").and_then(|(_, v)| self.text(v, "time"));
        let at = map.take("at").and_then(|(_, v)| {
            self.enumerated(
                v,
                "instant (`at`)",
                |s| match s {
                    "start" => Some(At::Start),
                    "end" => Some(At::End),
                    _ => None,
                },
                &["start", "end"],
            )
        });
        let window = map.take("window").and_then(|(_, v)| {
            let s = self.string(v, "window")?;
            match Window::parse(&s.value) {
                Some(w) => Some(Spanned::new(w, s.span)),
                None => {
                    self.diags.push(
                        Diagnostic::error(
                            Code::BadWindow,
                            format!("`{}` is not a window", s.value),
                        )
                        .at(self.file, s.span, "")
                        .help(format!("write one of {}", Window::FORMS)),
                    );
                    None
                }
            }
        });
        let grain = map
            .take("grain")
            .and_then(|(_, v)| self.enumerated(v, "grain", Grain::parse, &Grain::NAMES));
        let entity = map.take("entity").and_then(|(_, v)| self.text(v, "entity"));
        let entity_columns = match map.take("entity_columns") {
            Some((_, v)) => self
                .mapping(v, "entity_columns")
                .unwrap_or_default()
                .iter()
                .filter_map(|(k, v)| {
                    Some((
                        self.string(k, "entity column name")?,
                        self.text(v, "entity column")?,
                    ))
                })
                .collect(),
            None => vec![],
        };
        let lookups = match map.take("lookups") {
            Some((_, v)) => self.lookups(v),
            None => vec![],
        };
        let dimensions = map
            .take("dimensions")
            .map(|(_, v)| self.dimensions(v))
            .unwrap_or_default();
        let empty = map.take("empty").and_then(|(_, v)| match v.kind {
            // `empty: null` parses as a YAML null: it means the word it looks like.
            NodeKind::Null => Some(Spanned::new(Empty::Null, v.span.clone())),
            _ => self.enumerated(
                v,
                "empty value",
                |s| match s {
                    "0" | "zero" => Some(Empty::Zero),
                    "null" => Some(Empty::Null),
                    _ => None,
                },
                &["zero", "null"],
            ),
        });
        let using = match map.take("using") {
            Some((_, v)) => {
                let mut out = Vec::new();
                for (k, body) in self.mapping(v, "using").unwrap_or_default() {
                    let Some(n) = self.string(k, "metric name") else {
                        continue;
                    };
                    match &body.kind {
                        NodeKind::Map(entries) => {
                            let mut m = MapReader::new(entries, body.span.clone());
                            if let Some(spec) = self.metric(&mut m, n, true) {
                                out.push(spec);
                            }
                        }
                        _ => self.err(
                            Code::WrongType,
                            format!("`{}` under `using` must be a metric mapping", n.value),
                            body,
                            "expected `source:`, `formula:`, …",
                        ),
                    }
                }
                out
            }
            None => vec![],
        };
        let keys: Vec<&str> = METRIC_KEYS.iter().chain(MODEL_KEYS).copied().collect();
        let what = if inline {
            "an inline metric"
        } else {
            "a metric"
        };
        // A model key in a metric gets a suggestion, but the note lists only metric keys.
        self.finish_suggesting(
            std::mem::replace(
                map,
                MapReader {
                    entries: vec![],
                    span: span.clone(),
                },
            ),
            METRIC_KEYS,
            &keys,
            what,
        );
        Some(MetricSpec {
            file: self.file,
            name,
            description,
            unit,
            owner,
            tags,
            source,
            formula: formula?,
            filters,
            time,
            at,
            window,
            grain,
            entity,
            entity_columns,
            lookups,
            dimensions,
            empty,
            using,
            span,
        })
    }

    fn lookups(&mut self, node: &Node) -> Vec<LookupSpec> {
        let mut out = Vec::new();
        for (k, v) in self.mapping(node, "lookups").unwrap_or_default() {
            let Some(name) = self.string(k, "lookup name") else {
                continue;
            };
            let Some(body) = self.mapping(v, "lookup") else {
                continue;
            };
            let mut m = MapReader::new(body, v.span.clone());
            let what = format!("lookup `{}`", name.value);
            let from = self
                .require(&mut m, "from", &what)
                .and_then(|v| self.string(v, "from"));
            let on = self
                .require(&mut m, "on", &what)
                .and_then(|v| self.text(v, "on"));
            let value = self
                .require(&mut m, "value", &what)
                .and_then(|v| self.text(v, "value"));
            self.finish(m, LOOKUP_KEYS, "a lookup");
            if let (Some(from), Some(on), Some(value)) = (from, on, value) {
                out.push(LookupSpec {
                    name,
                    from,
                    on,
                    value,
                });
            }
        }
        out
    }
}

/// Whether `s` is a plain SQL identifier (letters, digits, `_`; not starting with a digit).
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}
