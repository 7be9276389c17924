//! Hyper-parameters as data: any [`PyValue`] read into a `#[derive(serde::Deserialize)]`
//! struct, as Python's `Model(**hparams["model_hparams"])` takes a dict. Errors name the key
//! path that is missing or mistyped.

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

use super::PyValue;
use crate::error::{Error, Result};

/// A serde error while reading a [`PyValue`] (what its `Deserializer` reports; [`PyValue::deserialize`] turns it into wgnn's error with the key path).
#[derive(Debug)]
pub struct DeError(String);

impl std::fmt::Display for DeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for DeError {}
impl de::Error for DeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        DeError(msg.to_string())
    }
}

type DeResult<T> = std::result::Result<T, DeError>;

impl<'de> IntoDeserializer<'de, DeError> for &'de PyValue {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> de::Deserializer<'de> for &'de PyValue {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> DeResult<V::Value> {
        match self {
            PyValue::None => v.visit_unit(),
            PyValue::Bool(b) => v.visit_bool(*b),
            PyValue::Int(i) => match i64::try_from(*i) {
                Ok(x) => v.visit_i64(x),
                Err(_) => v.visit_i128(*i),
            },
            PyValue::Float(f) => v.visit_f64(*f),
            PyValue::Str(s) => v.visit_borrowed_str(s),
            PyValue::Bytes(b) => v.visit_borrowed_bytes(b),
            PyValue::List(items) | PyValue::Tuple(items) | PyValue::Set(items) => {
                v.visit_seq(de::value::SeqDeserializer::new(items.iter()))
            }
            PyValue::Dict(items) => v.visit_map(de::value::MapDeserializer::new(
                items.iter().map(|(k, x)| (k, x)),
            )),
            PyValue::Complex(re, im) => {
                v.visit_seq(de::value::SeqDeserializer::new([*re, *im].into_iter()))
            }
            // An allowed object reads as its state (a `__dict__`), else its arguments.
            PyValue::Object { state: Some(s), .. } => s.as_ref().deserialize_any(v),
            PyValue::Object { args, .. } => {
                v.visit_seq(de::value::SeqDeserializer::new(args.iter()))
            }
            PyValue::Class(c) => v.visit_borrowed_str(c),
            PyValue::Tensor(t) => Err(de::Error::custom(format!(
                "a tensor ({} {:?}) where a plain value was expected",
                t.tensor.dtype().name(),
                t.tensor.shape()
            ))),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> DeResult<V::Value> {
        match self {
            PyValue::None => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> DeResult<V::Value> {
        match self {
            PyValue::Str(s) => v.visit_enum(s.as_str().into_deserializer()),
            other => Err(de::Error::custom(format!(
                "expected a string naming a variant, got {}",
                other.summary()
            ))),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> DeResult<V::Value> {
        v.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

impl PyValue {
    /// The value read into `T` (any `#[derive(serde::Deserialize)]` type): a dict into a
    /// struct (missing keys are errors unless the field has `#[serde(default)]`), lists and
    /// tuples into `Vec`s and tuples, `None` into `Option`, strings into unit enums. An error
    /// names the key path that is missing or mistyped.
    ///
    /// ```
    /// use wgnn::torch::PyValue;
    /// #[derive(serde::Deserialize, Debug, PartialEq)]
    /// struct Hp { c_hidden: Vec<usize>, act_fn_name: String, #[serde(default)] dropout: f64 }
    /// let v = PyValue::Dict(vec![
    ///     (PyValue::Str("c_hidden".into()), PyValue::List(vec![PyValue::Int(16), PyValue::Int(32)])),
    ///     (PyValue::Str("act_fn_name".into()), PyValue::Str("relu".into())),
    /// ]);
    /// let hp: Hp = v.deserialize()?;
    /// assert_eq!(hp, Hp { c_hidden: vec![16, 32], act_fn_name: "relu".into(), dropout: 0.0 });
    /// #[derive(serde::Deserialize, Debug)]
    /// #[allow(dead_code)]
    /// struct Wrong { c_hidden: Vec<String> }
    /// let e = v.deserialize::<Wrong>().unwrap_err().to_string();
    /// assert!(e.contains("c_hidden[0]"), "{e}");
    /// # Ok::<(), wgnn::Error>(())
    /// ```
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T> {
        serde_path_to_error::deserialize(self).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            Error::invalid(if path == "." || path.is_empty() {
                format!("reading {}: {inner}", std::any::type_name::<T>())
            } else {
                format!("reading {} at {path}: {inner}", std::any::type_name::<T>())
            })
        })
    }
    /// An `int` as `i64` (a bool too, as Python's); `None` for anything else.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            PyValue::Int(i) => i64::try_from(*i).ok(),
            PyValue::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }
    /// A `float` or an `int` as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            PyValue::Float(f) => Some(*f),
            PyValue::Int(i) => Some(*i as f64),
            PyValue::Bool(b) => Some(*b as u8 as f64),
            _ => None,
        }
    }
    /// A `bool`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            PyValue::Bool(b) => Some(*b),
            _ => None,
        }
    }
    /// A `str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            PyValue::Str(s) => Some(s),
            _ => None,
        }
    }
    /// The items of a `list`, `tuple` or `set`.
    pub fn as_list(&self) -> Option<&[PyValue]> {
        match self {
            PyValue::List(v) | PyValue::Tuple(v) | PyValue::Set(v) => Some(v),
            _ => None,
        }
    }
    /// The pairs of a `dict`, in order.
    pub fn as_dict(&self) -> Option<&[(PyValue, PyValue)]> {
        match self {
            PyValue::Dict(v) => Some(v),
            _ => None,
        }
    }
    /// Whether it is `None`.
    pub fn is_none(&self) -> bool {
        matches!(self, PyValue::None)
    }
}
