//! # wgnn — PyTorch's `nn.Module` state model on wgpu
//!
//! A tree of typed modules that owns **parameters** (trained, saved), **persistent buffers**
//! (not trained, saved) and **non-persistent buffers** (not trained, not saved), all of which
//! move together to a GPU; state dicts that PyTorch reads and writes (safetensors); and the
//! forward passes of the layers a Transformer needs, on the CPU and on any GPU wgpu reaches, with
//! PyTorch's numbers (elementwise ops bit for bit on every device, reductions within tested
//! bounds; see [`ops`]).
//!
//! | PyTorch | wgnn |
//! |---|---|
//! | `nn.Parameter(t)` / `nn.Parameter(t, requires_grad=False)` | [`Parameter::new`] / [`Parameter::frozen`] |
//! | `register_buffer(n, t)` / `register_buffer(n, t, persistent=False)` | [`Buffer::new`] / [`Buffer::non_persistent`] |
//! | `class M(nn.Module)` | a struct with `#[derive(Module)]` (or [`Module`](trait@Module) by hand, or [`DynModule`]) |
//! | `named_parameters()`, `named_buffers()`, `named_modules()`, `named_children()` | [`ModuleExt`] methods of the same names |
//! | `get_parameter`, `get_buffer`, `get_submodule` | the same, with errors naming the missing part |
//! | `requires_grad_(False)` | [`ModuleExt::set_requires_grad`] |
//! | `model.to(device)` | [`ModuleExt::to_device`] (one batched upload) |
//! | `state_dict()` / `load_state_dict(sd, strict)` | [`ModuleExt::state_dict`] / [`ModuleExt::load_state_dict`] (atomic) |
//! | `safetensors.torch.save_file` / `load_file` | [`StateDict::save`] / [`StateDict::load`] |
//! | `torch.load(f, weights_only=True)` (`.pt`, `.pth`, `.ckpt`) | [`StateDict::load`], [`torch::Checkpoint`] |
//! | `repr(model)` | [`ModuleExt::repr`], plus [`ModuleExt::summary`] |
//! | `nn.Sequential`, `nn.ModuleList` | [`Sequential`] (runs its layers), [`ModuleList`] (boxed, or typed `ModuleList<Block>`) |
//! | `model(x)` | [`Forward::forward`] |
//! | `model.train()` / `model.eval()` | [`ModuleExt::train`] / [`ModuleExt::eval`] |
//! | `torch.matmul`, `F.linear`, `F.softmax`, `F.layer_norm`, … | [`ops`], and as [`Tensor`] methods (`x.softmax(-1)?`) and operators (`&a * &b`) |
//! | `nn.Linear(i, o)`, `nn.Conv2d(i, o, 3, padding=1)` | [`nn::Linear::new(i, o)`](nn::Linear::new), `nn::Conv2d::new(i, o, 3)?.padding(1)`: on the CPU, initialised as PyTorch's |
//! | `torch.manual_seed(n)`, `nn.init.*` | [`manual_seed`], [`nn::init`] |
//! | `raise ValueError(...)` | [`Error::msg`], [`bail!`], [`ensure!`], [`ResultExt::context`] |
//! | the course's models (tutorials 3, 5, 6) | the `wgnn-ports` crate of this workspace |
//!
//! ```
//! use wgnn::{ModuleExt, PositionalEncoding, Tensor};
//! let pe = PositionalEncoding::new(4, 10)?; // on the CPU; `on(4, 10, &gpu)` builds it there
//! // The table is a non-persistent buffer: a buffer, but not in the state dict.
//! assert_eq!(pe.named_buffers().len(), 1);
//! assert!(pe.state_dict()?.is_empty());
//! let x = Tensor::from_slice(&[0f32; 2 * 3 * 4], &[2, 3, 4])?;
//! let y = pe.forward(&x)?;
//! assert_eq!(y.to_vec::<f32>()?[..4], [0.0, 1.0, 0.0, 1.0]); // sin 0, cos 0 at position 0
//! # Ok::<(), wgnn::Error>(())
//! ```
#![deny(missing_docs)]

// The derive writes `::wgnn::…` paths; this lets the crate use it on its own layers.
extern crate self as wgnn;

pub mod autograd;
mod device;
mod dtype;
mod error;
mod gpu;
mod methods;
pub mod module;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod profile;
mod state_dict;
mod tensor;
pub mod torch;

#[cfg(not(target_arch = "wasm32"))]
pub use device::enumerate_adapters;
pub use device::{
    enumerate_adapters_async, AdapterSummary, Device, GpuDevice, GpuOptions, GpuStats,
};
pub use dtype::DType;
pub use error::{Error, GpuErrorKind, IoSource, Result, ResultExt};
pub use methods::{wrap_dim, Dim, Dims, Operand, Rhs};
pub use module::{
    Buffer, DynModule, Forward, Layer, Module, ModuleExt, ModuleList, Parameter, Sequential,
    TensorInfo, TensorKind, Visitor, VisitorMut,
};
pub use nn::init::manual_seed;
pub use nn::{LearnedPositionalEmbedding, PositionalEncoding};
pub use state_dict::{LoadReport, StateDict, KINDS_METADATA_KEY};
pub use tensor::{to_device_many, Element, Tensor};
/// `#[derive(Module)]`: see the [`Module`](trait@Module) trait for its attributes and an example.
pub use wgnn_derive::Module;

#[doc(hidden)]
pub use gpu::tuning::ForcedMatmul as __ForcedMatmul;

/// Re-exported so applications can name the types wgnn takes without a version clash.
pub use wgpu;

/// What the kernel table appends to the file of kernel `name` (the codes, and for the direct
/// matrix products their shared part), for `tests/shaders.rs`.
#[doc(hidden)]
pub fn __wgsl_prelude(name: &str) -> String {
    gpu::kernels::prelude(name)
}
