//! A table's schema: the files' own schemas merged, widened where a lake drifted, and
//! held against what the models declare.
//!
//! Files of one table may disagree. A column that only later files have is NULL in the
//! earlier ones. A column whose type changed between files is widened when no value can
//! change: narrower integers to `Int64`, `Float32` to `Float64`, any timestamp unit or zone
//! to microseconds in UTC (a zone-less timestamp means UTC). Any other disagreement is
//! refused, naming both files. A declared column must exist and its files' type must be
//! the declared one or widen to it; CSV columns are parsed as declared.

use std::path::PathBuf;

use datafusion::arrow::datatypes::{DataType, Field, Schema};

use super::{SourceError, utc_timestamp};
use crate::spec::ColumnType;

/// A column type a model declares for a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    pub column: String,
    pub ty: ColumnType,
    /// The model that declares it, for messages.
    pub model: String,
}

/// The Arrow type kpi reads a declared column as.
pub fn arrow_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::Integer => DataType::Int64,
        ColumnType::Double => DataType::Float64,
        ColumnType::Decimal => DataType::Decimal128(38, 10),
        ColumnType::String => DataType::Utf8,
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::Timestamp => utc_timestamp(),
        ColumnType::Date => DataType::Date32,
    }
}

/// The type both `a` and `b` read as without changing a value, if any.
pub fn widen(a: &DataType, b: &DataType) -> Option<DataType> {
    use DataType::*;
    if a == b {
        return Some(a.clone());
    }
    let int = |t: &DataType| matches!(t, Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32);
    let float = |t: &DataType| matches!(t, Float16 | Float32 | Float64);
    let text = |t: &DataType| matches!(t, Utf8 | LargeUtf8 | Utf8View);
    match (a, b) {
        (Timestamp(..), Timestamp(..)) => Some(utc_timestamp()),
        _ if int(a) && int(b) => Some(Int64),
        _ if float(a) && float(b) => Some(Float64),
        // Both are text; keep the wider of the two forms DataFusion reads.
        _ if text(a) && text(b) => Some(if *a == Utf8View || *b == Utf8View {
            Utf8View
        } else {
            LargeUtf8
        }),
        _ => None,
    }
}

/// Whether a file column of type `found` can be read as the declared `ty`, and as what.
fn read_as(found: &DataType, ty: ColumnType) -> Option<DataType> {
    use DataType::*;
    let want = arrow_type(ty);
    match (ty, found) {
        (ColumnType::String, Utf8 | LargeUtf8 | Utf8View) => Some(found.clone()),
        (ColumnType::Double, Int8 | Int16 | Int32 | UInt8 | UInt16 | UInt32) => Some(want),
        (ColumnType::Decimal, Decimal128(..) | Decimal256(..)) => Some(found.clone()),
        (ColumnType::Date, Date32 | Date64) => Some(want),
        _ => widen(found, &want).filter(|w| *w == want),
    }
}

/// One file's schema, for merging.
pub struct FileSchema {
    pub file: PathBuf,
    pub schema: Schema,
}

/// Merges the files' schemas in file order: columns in order of first appearance, types
/// widened, or an error naming the two files that disagree.
pub fn merge(table: &str, files: &[FileSchema]) -> Result<Schema, SourceError> {
    let mut fields: Vec<(Field, &PathBuf)> = Vec::new();
    for f in files {
        for field in f.schema.fields() {
            match fields.iter_mut().find(|(x, _)| x.name() == field.name()) {
                None => fields.push((field.as_ref().clone().with_nullable(true), &f.file)),
                Some((seen, first)) => {
                    let Some(ty) = widen(seen.data_type(), field.data_type()) else {
                        return Err(SourceError::Drift {
                            table: table.to_string(),
                            column: field.name().clone(),
                            first: first.to_path_buf(),
                            first_type: seen.data_type().clone(),
                            file: f.file.clone(),
                            found: field.data_type().clone(),
                        });
                    };
                    *seen = Field::new(field.name(), ty, true);
                }
            }
        }
    }
    Ok(Schema::new(
        fields.into_iter().map(|(f, _)| f).collect::<Vec<_>>(),
    ))
}

/// `schema` with every declared column read as declared; `where_` names the files for
/// messages. CSV is parsed as declared whatever was inferred; Parquet must agree.
pub fn apply(
    table: &str,
    where_: &std::path::Path,
    schema: Schema,
    declared: &[Declared],
    csv: bool,
) -> Result<Schema, SourceError> {
    if let Some(d) = declared
        .iter()
        .find(|d| schema.field_with_name(&d.column).is_err())
    {
        let mut columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        columns.sort();
        return Err(SourceError::DeclaredMissing {
            table: table.to_string(),
            path: where_.to_path_buf(),
            column: d.column.clone(),
            model: d.model.clone(),
            columns: columns.join(", "),
        });
    }
    let fields = schema
        .fields()
        .iter()
        .map(|f| {
            let Some(d) = declared.iter().find(|d| d.column == *f.name()) else {
                return Ok(f.as_ref().clone());
            };
            let ty = if csv {
                Some(arrow_type(d.ty))
            } else {
                read_as(f.data_type(), d.ty)
            };
            match ty {
                Some(ty) => Ok(Field::new(f.name(), ty, true)),
                None => Err(SourceError::DeclaredMismatch {
                    table: table.to_string(),
                    path: where_.to_path_buf(),
                    column: d.column.clone(),
                    model: d.model.clone(),
                    declared: d.ty,
                    found: f.data_type().clone(),
                }),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;
    use DataType::*;

    #[test]
    fn widening_keeps_every_value() {
        assert_eq!(widen(&Int32, &Int64), Some(Int64));
        assert_eq!(widen(&UInt32, &Int16), Some(Int64));
        assert_eq!(widen(&Float32, &Float64), Some(Float64));
        assert_eq!(
            widen(
                &Timestamp(datafusion::arrow::datatypes::TimeUnit::Nanosecond, None),
                &utc_timestamp()
            ),
            Some(utc_timestamp())
        );
        // u64 does not fit i64, and an integer column turning float is a real change.
        assert_eq!(widen(&UInt64, &Int64), None);
        assert_eq!(widen(&Int64, &Float64), None);
        assert_eq!(widen(&Utf8, &Int64), None);
    }

    #[test]
    fn declared_types_accept_only_lossless_reads() {
        assert_eq!(read_as(&Int32, ColumnType::Integer), Some(Int64));
        assert_eq!(read_as(&Int32, ColumnType::Double), Some(Float64));
        assert_eq!(read_as(&Utf8View, ColumnType::String), Some(Utf8View));
        assert_eq!(read_as(&Float64, ColumnType::Integer), None);
        assert_eq!(read_as(&Utf8, ColumnType::Double), None);
        assert_eq!(read_as(&Int64, ColumnType::Timestamp), None);
    }
}
