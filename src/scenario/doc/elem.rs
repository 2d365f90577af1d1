//! The document's elements as toml_edit hands them out ([`Elem`]): their
//! kinds and JSON forms. Imports no other `doc` file.

use toml_edit::{Item, TableLike, Value};

fn type_name(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Table(_) => "table",
        Item::ArrayOfTables(_) => "array of tables",
        Item::Value(v) => value_type_name(v),
    }
}

/// A borrowed element of the document: toml_edit keeps array elements as
/// `Value`s and the tables of an array of tables as `Table`s, not as `Item`s.
#[derive(Clone, Copy)]
pub enum Elem<'a> {
    Item(&'a Item),
    Value(&'a Value),
    Table(&'a toml_edit::Table),
}

impl<'a> Elem<'a> {
    pub(super) fn value(self) -> Option<&'a Value> {
        match self {
            Elem::Item(Item::Value(v)) => Some(v),
            Elem::Value(v) => Some(v),
            Elem::Item(_) | Elem::Table(_) => None,
        }
    }
    pub(crate) fn as_str(self) -> Option<&'a str> {
        self.value()?.as_str()
    }
    pub fn as_integer(self) -> Option<i64> {
        self.value()?.as_integer()
    }
    /// This element as JSON, without recording an error.
    pub fn to_json_quiet(self) -> Option<serde_json::Value> {
        self.to_json()
    }
    pub(super) fn as_float(self) -> Option<f64> {
        self.value()?.as_float()
    }
    pub(super) fn as_bool(self) -> Option<bool> {
        self.value()?.as_bool()
    }
    /// Whether this is a table (inline or not), without recording an error.
    pub fn as_table_like_pub(self) -> Option<&'a dyn TableLike> {
        self.as_table_like()
    }

    pub(super) fn as_table_like(self) -> Option<&'a dyn TableLike> {
        match self {
            Elem::Item(i) => i.as_table_like(),
            Elem::Value(v) => v.as_inline_table().map(|t| t as &dyn TableLike),
            Elem::Table(t) => Some(t as &dyn TableLike),
        }
    }
    /// Whether this is an array (of values or of tables).
    pub fn value_is_array(self) -> bool {
        matches!(self, Elem::Item(Item::ArrayOfTables(_)))
            || self.value().is_some_and(Value::is_array)
    }
    /// The kind of value, for messages ("string", "integer", ...).
    pub fn type_name_pub(self) -> &'static str {
        self.type_name()
    }
    pub(super) fn type_name(self) -> &'static str {
        match self {
            Elem::Item(i) => type_name(i),
            Elem::Value(v) => value_type_name(v),
            Elem::Table(_) => "table",
        }
    }
    pub(super) fn to_json(self) -> Option<serde_json::Value> {
        match self {
            Elem::Item(i) => item_to_json(i),
            Elem::Value(v) => value_to_json(v),
            Elem::Table(t) => table_to_json(t),
        }
    }
    pub(super) fn to_json_lossy(self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Elem::Item(Item::None) => J::Null,
            Elem::Item(Item::Value(v)) | Elem::Value(v) => match v {
                Value::Float(f) => {
                    serde_json::Number::from_f64(*f.value()).map_or(J::Null, J::Number)
                }
                Value::Datetime(d) => J::String(d.value().to_string()),
                Value::Array(a) => {
                    J::Array(a.iter().map(|x| Elem::Value(x).to_json_lossy()).collect())
                }
                Value::InlineTable(t) => J::Object(
                    t.iter()
                        .map(|(k, x)| (k.to_string(), Elem::Value(x).to_json_lossy()))
                        .collect(),
                ),
                other => value_to_json(other).unwrap_or(J::Null),
            },
            Elem::Item(Item::Table(t)) | Elem::Table(t) => J::Object(
                t.iter()
                    .map(|(k, x)| (k.to_string(), Elem::Item(x).to_json_lossy()))
                    .collect(),
            ),
            Elem::Item(Item::ArrayOfTables(a)) => {
                J::Array(a.iter().map(|t| Elem::Table(t).to_json_lossy()).collect())
            }
        }
    }
}

fn value_type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Integer(_) => "integer",
        Value::Float(_) => "float",
        Value::Boolean(_) => "boolean",
        Value::Datetime(_) => "datetime",
        Value::Array(_) => "array",
        Value::InlineTable(_) => "inline table",
    }
}

fn table_to_json(t: &toml_edit::Table) -> Option<serde_json::Value> {
    let mut m = serde_json::Map::new();
    for (k, v) in t.iter() {
        m.insert(k.to_string(), item_to_json(v)?);
    }
    Some(serde_json::Value::Object(m))
}

fn item_to_json(item: &Item) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    Some(match item {
        Item::None => J::Null,
        Item::Value(v) => value_to_json(v)?,
        Item::Table(t) => table_to_json(t)?,
        Item::ArrayOfTables(a) => {
            J::Array(a.iter().map(table_to_json).collect::<Option<Vec<_>>>()?)
        }
    })
}

fn value_to_json(v: &Value) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    Some(match v {
        Value::String(s) => J::String(s.value().clone()),
        Value::Integer(i) => J::from(*i.value()),
        // inf and nan were reported by `refuse_non_finite`; null keeps them
        // from adding a second, vaguer error here.
        Value::Float(f) => serde_json::Number::from_f64(*f.value()).map_or(J::Null, J::Number),
        Value::Boolean(b) => J::Bool(*b.value()),
        Value::Datetime(_) => return None,
        Value::Array(a) => J::Array(a.iter().map(value_to_json).collect::<Option<Vec<_>>>()?),
        Value::InlineTable(t) => {
            let mut m = serde_json::Map::new();
            for (k, v) in t.iter() {
                m.insert(k.to_string(), value_to_json(v)?);
            }
            J::Object(m)
        }
    })
}
