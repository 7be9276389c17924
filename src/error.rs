//! One error type for the whole crate: every failure names what was wrong and what was expected.

use thiserror::Error;

/// Everything that can go wrong in wgnn. Comparable with `==` so tests can assert on errors.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Error {
    /// No GPU adapter could be found at all.
    #[error("no GPU adapter found (backends: {backends}); {hint}")]
    NoAdapter {
        /// The backends that were searched.
        backends: String,
        /// How to get one.
        hint: String,
    },
    /// `WGPU_ADAPTER_NAME` (or an explicit name) matched none of the adapters.
    #[error(
        "no adapter name contains {wanted:?} (from {source_var}); adapters found: {}",
        list_or_none(found)
    )]
    AdapterNotFound {
        /// The name asked for.
        wanted: String,
        /// Where the name came from (`WGPU_ADAPTER_NAME` or an argument).
        source_var: String,
        /// Every adapter seen, as "name (backend, type)".
        found: Vec<String>,
    },
    /// The adapter refused to create a device.
    #[error("adapter {adapter} refused to create a device: {message}")]
    RequestDevice {
        /// The adapter.
        adapter: String,
        /// wgpu's reason.
        message: String,
    },
    /// A GPU operation was rejected by wgpu (validation, out of memory, internal error).
    #[error("GPU error during {op} on {adapter}: {message}")]
    Gpu {
        /// What wgnn was doing.
        op: String,
        /// The adapter it ran on.
        adapter: String,
        /// wgpu's message.
        message: String,
    },
    /// The GPU device was lost or destroyed.
    #[error("GPU device {adapter} is lost ({reason}) during {op}; create a new Device")]
    DeviceLost {
        /// What wgnn was doing.
        op: String,
        /// The adapter.
        adapter: String,
        /// Why it was lost.
        reason: String,
    },
    /// GPU work did not finish within the bound.
    #[error("GPU work for {op} on {adapter} did not finish within {seconds} s")]
    Timeout {
        /// What wgnn was doing.
        op: String,
        /// The adapter.
        adapter: String,
        /// The bound that passed.
        seconds: f64,
    },
    /// The data does not fit the shape.
    #[error("shape {shape:?} holds {expected} element(s) of {dtype} ({expected_bytes} bytes), but the data has {got_bytes} bytes")]
    DataLength {
        /// The shape asked for.
        shape: Vec<usize>,
        /// Its dtype.
        dtype: &'static str,
        /// Elements the shape holds.
        expected: usize,
        /// Bytes the shape needs.
        expected_bytes: usize,
        /// Bytes given.
        got_bytes: usize,
    },
    /// Shapes do not agree.
    #[error("{op}: {message}")]
    Shape {
        /// The operation.
        op: String,
        /// What was wrong and what was expected.
        message: String,
    },
    /// A dtype that the operation cannot take.
    #[error("{op}: expected dtype {expected}, got {got}")]
    Dtype {
        /// The operation.
        op: String,
        /// The dtype(s) it takes.
        expected: String,
        /// The dtype given.
        got: String,
    },
    /// Tensors on different devices.
    #[error(
        "{op}: tensors are on different devices ({a} and {b}); move one with .to(&device) first"
    )]
    DeviceMismatch {
        /// The operation.
        op: String,
        /// The first device.
        a: String,
        /// The second device.
        b: String,
    },
    /// Something larger than a device limit.
    #[error("{what} needs {requested} but the device limit {limit_name} is {limit} on {adapter}")]
    Limit {
        /// What was too large.
        what: String,
        /// How much it needed.
        requested: u64,
        /// The limit's wgpu name.
        limit_name: &'static str,
        /// The limit's value.
        limit: u64,
        /// The adapter.
        adapter: String,
    },
    /// An argument out of range.
    #[error("{0}")]
    InvalidArgument(String),
    /// A module, parameter or buffer name that PyTorch would refuse.
    #[error("invalid name {name:?} in module {module:?}: {reason}")]
    InvalidName {
        /// The dotted path of the module that holds it ("" for the root).
        module: String,
        /// The name.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// A dotted path that leads nowhere.
    #[error(
        "{kind} {path:?} not found: {missing:?} does not exist in {parent:?}; it has: {}",
        list_or_none(available)
    )]
    NotFound {
        /// parameter, buffer or submodule.
        kind: &'static str,
        /// The full path asked for.
        path: String,
        /// The part of the path that is missing.
        missing: String,
        /// The module it was looked for in.
        parent: String,
        /// What that module has.
        available: Vec<String>,
    },
    /// `load_state_dict` refused the dict. Nothing was changed.
    #[error("Error(s) in loading state_dict for {module}:\n\t{}", problems.join("\n\t"))]
    LoadStateDict {
        /// The module's type name.
        module: String,
        /// Keys in the module but not in the dict.
        missing: Vec<String>,
        /// Keys in the dict but not in the module.
        unexpected: Vec<String>,
        /// Every problem, one per line, in PyTorch's wording.
        problems: Vec<String>,
    },
    /// A file could not be read or written.
    #[error("{op} {path}: {message}")]
    Io {
        /// read or write.
        op: &'static str,
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// A malformed safetensors file or buffer.
    #[error("invalid safetensors data{}: {message}", path_suffix(path))]
    Format {
        /// The file, if any.
        path: Option<String>,
        /// What is wrong with it.
        message: String,
    },
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

fn path_suffix(p: &Option<String>) -> String {
    p.as_ref().map(|p| format!(" in {p}")).unwrap_or_default()
}

/// `Result` with wgnn's [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn shape(op: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Shape {
            op: op.into(),
            message: message.into(),
        }
    }
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }
}
