//! What a tensor of a module is (parameter, frozen parameter, buffer, non-persistent buffer),
//! and the summary row that describes one. A leaf: imports nothing else of the module tree.

use std::fmt;

use crate::device::Device;
use crate::dtype::DType;

/// What a tensor of a module is, in the terms of the seed question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorKind {
    /// `nn.Parameter` with `requires_grad=True`.
    Parameter,
    /// `nn.Parameter` with `requires_grad=False`.
    FrozenParameter,
    /// `register_buffer(name, t)`.
    Buffer,
    /// `register_buffer(name, t, persistent=False)`.
    NonPersistentBuffer,
}

impl TensorKind {
    /// Whether `state_dict()` holds it.
    pub fn in_state_dict(self) -> bool {
        !matches!(self, TensorKind::NonPersistentBuffer)
    }
    /// Whether `parameters()` yields it.
    pub fn is_parameter(self) -> bool {
        matches!(self, TensorKind::Parameter | TensorKind::FrozenParameter)
    }
    /// The name used in the summary and in saved metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            TensorKind::Parameter => "parameter",
            TensorKind::FrozenParameter => "frozen parameter",
            TensorKind::Buffer => "buffer",
            TensorKind::NonPersistentBuffer => "non-persistent buffer",
        }
    }
    /// Parses [`TensorKind::as_str`].
    pub fn parse(s: &str) -> Option<TensorKind> {
        [
            TensorKind::Parameter,
            TensorKind::FrozenParameter,
            TensorKind::Buffer,
            TensorKind::NonPersistentBuffer,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl fmt::Display for TensorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of a module's summary: every tensor, what it is and where it lives.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// Dotted path.
    pub path: String,
    /// Parameter, frozen parameter, buffer or non-persistent buffer.
    pub kind: TensorKind,
    /// Shape.
    pub shape: Vec<usize>,
    /// Dtype.
    pub dtype: DType,
    /// Device.
    pub device: Device,
    /// Bytes of data.
    pub bytes: usize,
}
