//! One error type for the whole crate: every failure names what was wrong and what was expected.

use thiserror::Error;

/// Everything that can go wrong in wgnn. Comparable with `==` so tests can assert on errors.
/// New variants may be added: match with a wildcard arm.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
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
    #[error("GPU {kind} error during {op} on {adapter}: {message}")]
    Gpu {
        /// What wgnn was doing.
        op: String,
        /// The adapter it ran on.
        adapter: String,
        /// Which kind of wgpu error (the error scope that caught it).
        kind: GpuErrorKind,
        /// wgpu's message, its sources included.
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
    /// The GPU made no progress within the bound: no submission finished (or a read-back never
    /// mapped) for `seconds`. A long job of many submissions is not a timeout.
    #[error("GPU work for {op} on {adapter} made no progress for {seconds} s (no submission finished); raise GpuOptions::timeout if a single dispatch runs that long")]
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
    /// A host allocation the size asked for could not get (checked before allocating, never an
    /// abort).
    #[error("{what} needs {bytes} bytes of host memory, which could not be allocated")]
    OutOfMemory {
        /// What was being allocated.
        what: String,
        /// How many bytes.
        bytes: u128,
    },
    /// A broken invariant inside wgnn: a bug, please report it with the message.
    #[error("internal error in wgnn (a bug): {0}")]
    Internal(String),
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
    #[error("{op} {path}: {source}")]
    Io {
        /// reading or writing.
        op: &'static str,
        /// The file.
        path: String,
        /// The OS error (its [`std::io::ErrorKind`] through [`IoSource::kind`]).
        #[source]
        source: IoSource,
    },
    /// An error raised by code outside wgnn (a model port, an application) with
    /// [`Error::msg`].
    #[error("{0}")]
    Message(String),
    /// An error with what was being done when it happened ([`Error::context`],
    /// [`ResultExt::context`]): `context: cause`.
    #[error("{context}: {source}")]
    Context {
        /// What was being done.
        context: String,
        /// The error itself.
        #[source]
        source: Box<Error>,
    },
    /// A malformed or refused file: safetensors, or a `torch.save` checkpoint (whose pickle
    /// names a global outside the allow-list, or whose storages do not hold its tensors).
    #[error("invalid checkpoint data{}: {message}", path_suffix(path))]
    Format {
        /// The file, if any.
        path: Option<String>,
        /// What is wrong with it.
        message: String,
    },
}

/// Which wgpu error scope caught a GPU error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuErrorKind {
    /// A validation error (a wgnn bug, or a limit wgnn did not check).
    Validation,
    /// The device ran out of memory.
    OutOfMemory,
    /// An internal driver or wgpu error.
    Internal,
    /// Something else wgpu reported (a failed poll or map).
    Other,
}

impl std::fmt::Display for GpuErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GpuErrorKind::Validation => "validation",
            GpuErrorKind::OutOfMemory => "out-of-memory",
            GpuErrorKind::Internal => "internal",
            GpuErrorKind::Other => "wgpu",
        })
    }
}

impl GpuErrorKind {
    pub(crate) fn of(e: &wgpu::Error) -> Self {
        match e {
            wgpu::Error::Validation { .. } => GpuErrorKind::Validation,
            wgpu::Error::OutOfMemory { .. } => GpuErrorKind::OutOfMemory,
            wgpu::Error::Internal { .. } => GpuErrorKind::Internal,
        }
    }
}

/// An OS error kept as the source of [`Error::Io`]: shared so the error stays `Clone`, compared
/// by kind and message so tests can `assert_eq!` on errors.
#[derive(Debug, Clone)]
pub struct IoSource(pub std::sync::Arc<std::io::Error>);

impl IoSource {
    /// The OS error's kind (`NotFound`, `PermissionDenied`, …).
    pub fn kind(&self) -> std::io::ErrorKind {
        self.0.kind()
    }
}

impl PartialEq for IoSource {
    fn eq(&self, other: &Self) -> bool {
        self.0.kind() == other.0.kind() && self.0.to_string() == other.0.to_string()
    }
}

impl std::fmt::Display for IoSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for IoSource {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
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
    /// An error of your own, with wgnn's type: for model code and applications whose functions
    /// return [`wgnn::Result`](Result), as `ValueError(message)` in Python.
    ///
    /// ```
    /// use wgnn::{Error, ResultExt};
    /// fn act_fn(name: &str) -> wgnn::Result<f32> {
    ///     match name {
    ///         "relu" => Ok(0.0),
    ///         _ => Err(Error::msg(format!("unknown activation {name:?}"))),
    ///     }
    /// }
    /// let e = act_fn("swishy").context("building block 3").unwrap_err();
    /// assert_eq!(e.to_string(), "building block 3: unknown activation \"swishy\"");
    /// assert_eq!(e.root(), &Error::msg("unknown activation \"swishy\""));
    /// // wgnn's errors are std errors: `?` works in functions returning Box<dyn Error> or anyhow.
    /// fn app() -> Result<(), Box<dyn std::error::Error>> { Ok(act_fn("relu").map(|_| ())?) }
    /// assert!(app().is_ok());
    /// ```
    pub fn msg(message: impl std::fmt::Display) -> Self {
        Error::Message(message.to_string())
    }
    /// This error with what was being done: printed `context: error`, the error kept as
    /// [`std::error::Error::source`] (and [`Error::root`]).
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        Error::Context {
            context: context.to_string(),
            source: Box::new(self),
        }
    }
    /// The error under every added context.
    pub fn root(&self) -> &Error {
        match self {
            Error::Context { source, .. } => source.root(),
            e => e,
        }
    }
    /// A format error without a file, given the file it came from.
    pub(crate) fn with_path(self, path: &std::path::Path) -> Error {
        match self {
            Error::Format {
                path: None,
                message,
            } => Error::Format {
                path: Some(path.display().to_string()),
                message,
            },
            e => e,
        }
    }
    pub(crate) fn shape(op: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Shape {
            op: op.into(),
            message: message.into(),
        }
    }
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }
    pub(crate) fn io(op: &'static str, path: &std::path::Path, e: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.display().to_string(),
            source: IoSource(std::sync::Arc::new(e)),
        }
    }
    /// The message with its sources (wgpu nests the useful part in them).
    pub(crate) fn gpu(op: &str, adapter: String, e: &wgpu::Error) -> Self {
        let mut message = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            let m = s.to_string();
            if !message.contains(&m) {
                message.push_str(": ");
                message.push_str(&m);
            }
            src = s.source();
        }
        Error::Gpu {
            op: op.to_string(),
            adapter,
            kind: GpuErrorKind::of(e),
            message,
        }
    }
}

/// Context for any `Result` whose error converts into wgnn's: `.context("loading the encoder")?`.
pub trait ResultExt<T> {
    /// The error, if any, with `context` before it ([`Error::context`]).
    fn context(self, context: impl std::fmt::Display) -> Result<T>;
    /// The same, the context computed only on error.
    fn with_context<C: std::fmt::Display>(self, f: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn context(self, context: impl std::fmt::Display) -> Result<T> {
        self.map_err(|e| e.into().context(context))
    }
    fn with_context<C: std::fmt::Display>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| e.into().context(f()))
    }
}

/// Returns early with an [`Error::msg`] built by `format!`: `bail!("unknown block {name:?}")`.
///
/// ```
/// fn heads(embed_dim: usize, num_heads: usize) -> wgnn::Result<usize> {
///     wgnn::ensure!(num_heads > 0 && embed_dim % num_heads == 0, "{embed_dim} is not 0 modulo {num_heads}");
///     if embed_dim > 4096 {
///         wgnn::bail!("embed_dim {embed_dim} is larger than this model takes");
///     }
///     Ok(embed_dim / num_heads)
/// }
/// assert_eq!(heads(32, 3).unwrap_err().to_string(), "32 is not 0 modulo 3");
/// assert_eq!(heads(32, 4)?, 8);
/// # Ok::<(), wgnn::Error>(())
/// ```
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return ::core::result::Result::Err($crate::Error::msg(::std::format!($($arg)*)))
    };
}

/// Returns early with an [`Error::msg`] unless `cond` holds: `ensure!(n > 0, "n is {n}")`.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::bail!($($arg)*);
        }
    };
}
