//! Text values as keys of a bitmap count: each distinct text gets a number, and a count
//! of texts is a count of their numbers. The numbers are handed out by one [`Texts`] per
//! count, shared by all its accumulators (each partition's partial and final ones, and
//! any state spilled and read back), so a text has one number everywhere the count's
//! states meet. They are numbers of this process only, which is why only local runs
//! count text this way ([`super::DistinctInBitmaps`]).
//!
//! DataFusion counts `count(DISTINCT text)` per group by grouping by (group, text) and
//! then by group: at 10M orders, a count of each customer's categories in a month ran two
//! hash aggregations of 7M groups each. Numbered, the texts become keys of the same sets
//! as integers, in one aggregation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, UInt64Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result};

/// Bytes a number of a text costs beyond the text's own: the map's entry and its box.
const ENTRY_BYTES: usize = 48;

/// The numbers of a count's texts. See the module doc. Equal only to itself: two
/// numberings are two counts.
#[derive(Debug, Default)]
pub struct Texts {
    numbers: Mutex<HashMap<Box<str>, u64, ahash::RandomState>>,
}

impl PartialEq for Texts {
    fn eq(&self, other: &Texts) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for Texts {}

impl std::hash::Hash for Texts {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(self, state);
    }
}

impl Texts {
    /// A fresh numbering, for one count.
    pub fn shared() -> Arc<Texts> {
        Arc::new(Texts::default())
    }

    /// Each value of the text array `a` as its number (NULL stays NULL), and the bytes
    /// that the texts seen here first added to the numbering.
    pub fn numbers(&self, a: &ArrayRef) -> Result<(ArrayRef, usize)> {
        if let Some(d) = a.as_any_dictionary_opt() {
            // A dictionary's values are numbered once, and its keys pick them.
            let (values, added) = self.numbers(d.values())?;
            let keys = UInt64Array::from_iter(
                d.normalized_keys()
                    .iter()
                    .zip(0..a.len())
                    .map(|(&k, row)| a.is_valid(row).then_some(k as u64)),
            );
            return Ok((take(&values, &keys, None)?, added));
        }
        let mut numbers = self
            .numbers
            .lock()
            .map_err(|_| DataFusionError::Internal("the text numbering was poisoned".into()))?;
        let mut added = 0;
        let mut number = |text: Option<&str>| {
            text.map(|t| match numbers.get(t) {
                Some(&n) => n,
                None => {
                    let n = numbers.len() as u64;
                    numbers.insert(t.into(), n);
                    added += t.len() + ENTRY_BYTES;
                    n
                }
            })
        };
        let out: UInt64Array = match a.data_type() {
            DataType::Utf8View => a.as_string_view().iter().map(&mut number).collect(),
            DataType::Utf8 => a.as_string::<i32>().iter().map(&mut number).collect(),
            DataType::LargeUtf8 => a.as_string::<i64>().iter().map(&mut number).collect(),
            other => {
                return Err(DataFusionError::Internal(format!(
                    "a count of distinct texts got {other}"
                )));
            }
        };
        Ok((Arc::new(out), added))
    }
}

/// Whether values of type `t` are texts this numbering takes.
pub fn is_text(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => true,
        DataType::Dictionary(_, v) => matches!(
            v.as_ref(),
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{DictionaryArray, StringArray, StringViewArray};
    use datafusion::arrow::datatypes::Int8Type;

    use super::*;

    fn numbers(texts: &Texts, a: ArrayRef) -> Vec<Option<u64>> {
        texts
            .numbers(&a)
            .unwrap()
            .0
            .as_primitive::<datafusion::arrow::datatypes::UInt64Type>()
            .iter()
            .collect()
    }

    #[test]
    fn a_text_has_one_number_in_every_array_and_type_and_null_has_none() {
        let texts = Texts::default();
        let views: ArrayRef = Arc::new(StringViewArray::from(vec![
            Some("b"),
            None,
            Some("a"),
            Some("b"),
        ]));
        assert_eq!(numbers(&texts, views), [Some(0), None, Some(1), Some(0)]);
        let plain: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), Some("c"), Some("")]));
        assert_eq!(numbers(&texts, plain), [Some(1), Some(2), Some(3)]);
        let dict: DictionaryArray<Int8Type> = vec![Some("c"), None, Some("b"), Some("d")]
            .into_iter()
            .collect();
        assert_eq!(
            numbers(&texts, Arc::new(dict)),
            [Some(2), None, Some(0), Some(4)]
        );
    }
}
