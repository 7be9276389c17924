//! PyTorch's module state model: a tree of typed modules that own parameters, persistent
//! buffers and non-persistent buffers. A module only lists its fields to a visitor; names,
//! order, look-ups, moving, state dicts and printing are all built once on top of that.

mod containers;
mod ext;
mod forward;
mod kinds;
mod print;
pub(crate) mod walk;

pub use containers::{DynModule, ListItem, ModuleList, SeqItem, Sequential};
pub use ext::ModuleExt;
pub use forward::{Forward, Layer};

pub use kinds::{TensorInfo, TensorKind};

use std::sync::Arc;

use crate::autograd::{Leaf, Origin};
use crate::tensor::Tensor;

/// A trainable tensor (`nn.Parameter`). `requires_grad = false` makes it frozen: still a
/// parameter, still in `parameters()` and the state dict — unlike a buffer — but no gradient
/// reaches it. A trainable parameter's [`tensor`](Parameter::tensor) carries its gradient slot:
/// ops on it record the graph, and `loss.backward()` fills [`grad`](Parameter::grad).
pub struct Parameter {
    tensor: Tensor,
    requires_grad: bool,
    leaf: Arc<Leaf>,
}

impl Clone for Parameter {
    /// A parameter with its own gradient slot (holding a copy of the gradient), as
    /// `copy.deepcopy` gives in PyTorch: training the clone does not touch the original's grad.
    fn clone(&self) -> Self {
        let mut p = Parameter {
            tensor: self.tensor.detach(),
            requires_grad: self.requires_grad,
            leaf: Arc::new(Leaf::default()),
        };
        p.leaf.set(self.grad());
        p.attach();
        p
    }
}

impl std::fmt::Debug for Parameter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parameter")
            .field("tensor", &self.tensor)
            .field("requires_grad", &self.requires_grad)
            .field("has_grad", &self.grad().is_some())
            .finish()
    }
}

impl Parameter {
    /// A trainable parameter (`requires_grad = True`).
    pub fn new(tensor: Tensor) -> Self {
        let mut p = Parameter {
            tensor,
            requires_grad: true,
            leaf: Arc::new(Leaf::default()),
        };
        p.attach();
        p
    }
    /// A frozen parameter (`nn.Parameter(t, requires_grad=False)`).
    pub fn frozen(tensor: Tensor) -> Self {
        let mut p = Parameter::new(tensor);
        p.set_requires_grad(false);
        p
    }
    /// The value (linked to the gradient slot when trainable).
    pub fn tensor(&self) -> &Tensor {
        &self.tensor
    }
    /// Whether an optimizer would train it.
    pub fn requires_grad(&self) -> bool {
        self.requires_grad
    }
    /// Freezes or unfreezes it (`p.requires_grad_(on)`).
    pub fn set_requires_grad(&mut self, on: bool) {
        self.requires_grad = on;
        self.attach();
    }
    /// The gradient accumulated by `backward` since the last [`zero_grad`](Parameter::zero_grad)
    /// (`p.grad`), on the parameter's device; `None` if no backward reached it.
    pub fn grad(&self) -> Option<Tensor> {
        self.leaf.get()
    }
    /// Sets the gradient (`p.grad = g`): same shape as the parameter, or an error.
    pub fn set_grad(&mut self, g: Option<Tensor>) -> crate::Result<()> {
        if let Some(g) = &g {
            check_same("set_grad", &self.tensor, g, "parameter", "gradient")?;
        }
        self.leaf.set(g.map(|g| g.detach()));
        Ok(())
    }
    /// Drops the gradient (`p.grad = None`, what `zero_grad()` does by default).
    pub fn zero_grad(&mut self) {
        self.leaf.set(None);
    }
    /// Links the tensor to the gradient slot when trainable, unlinks it when frozen.
    fn attach(&mut self) {
        let t = self.tensor.detach();
        self.tensor = if self.requires_grad {
            t.with_origin(Some(Origin::Leaf(self.leaf.clone())))
        } else {
            t
        };
    }
    /// A new value from a move or a load: a gradient on another device or of another shape
    /// would no longer fit, so it is dropped then.
    pub(crate) fn set(&mut self, t: Tensor) {
        let fits = self.grad().is_some_and(|g| {
            g.shape() == t.shape() && g.dtype() == t.dtype() && g.device() == t.device()
        });
        if !fits {
            self.leaf.set(None);
        }
        self.tensor = t;
        self.attach();
    }
    /// Puts back a gradient moved with the parameter (`to_device`), after [`Parameter::set`].
    pub(crate) fn restore_grad(&mut self, g: Tensor) {
        self.leaf.set(Some(g.detach()));
    }
    /// Gives the parameter a new value (`with torch.no_grad(): p.copy_(t)`, or `p.data = t`):
    /// same shape and dtype, or an error naming both.
    pub fn set_tensor(&mut self, t: Tensor) -> crate::Result<()> {
        check_same("set_tensor", &self.tensor, &t, "parameter", "new value")?;
        self.set(t);
        Ok(())
    }
}

/// `new` must have `cur`'s shape and dtype: an error of `op` naming both otherwise.
fn check_same(
    op: &str,
    cur: &Tensor,
    new: &Tensor,
    what: &str,
    new_what: &str,
) -> crate::Result<()> {
    if cur.shape() != new.shape() || cur.dtype() != new.dtype() {
        return Err(crate::Error::shape(
            op,
            format!(
                "the {what} is {} {:?}, the {new_what} {} {:?}",
                cur.dtype().name(),
                cur.shape(),
                new.dtype().name(),
                new.shape()
            ),
        ));
    }
    Ok(())
}

/// A tensor that is state but not trained (`register_buffer`). Persistent buffers are saved in
/// the state dict; non-persistent ones (`persistent=False`) are not. Both move with the module.
#[derive(Clone, Debug)]
pub struct Buffer {
    tensor: Tensor,
    persistent: bool,
}

impl Buffer {
    /// A persistent buffer (`register_buffer(name, t)`): saved in the state dict.
    pub fn new(tensor: Tensor) -> Self {
        Buffer {
            tensor: tensor.detach(),
            persistent: true,
        }
    }
    /// A non-persistent buffer (`register_buffer(name, t, persistent=False)`): not saved.
    pub fn non_persistent(tensor: Tensor) -> Self {
        Buffer {
            tensor: tensor.detach(),
            persistent: false,
        }
    }
    /// The value.
    pub fn tensor(&self) -> &Tensor {
        &self.tensor
    }
    /// Whether it goes into the state dict.
    pub fn persistent(&self) -> bool {
        self.persistent
    }
    /// Gives the buffer a new value of the same shape and dtype.
    pub fn set_tensor(&mut self, t: Tensor) -> crate::Result<()> {
        check_same("set_tensor", &self.tensor, &t, "buffer", "new value")?;
        self.set(t);
        Ok(())
    }
    /// Buffers take no gradient: a value computed from parameters is stored detached.
    pub(crate) fn set(&mut self, t: Tensor) {
        self.tensor = t.detach();
    }
}

/// Receives a module's own fields, by reference.
pub trait Visitor<'a> {
    /// A parameter registered under `name`.
    fn parameter(&mut self, name: &str, p: &'a Parameter);
    /// A buffer registered under `name`.
    fn buffer(&mut self, name: &str, b: &'a Buffer);
    /// A child module registered under `name`.
    fn module(&mut self, name: &str, m: &'a dyn Module);
}

/// Receives a module's own fields, mutably, for as long as the module is borrowed (`'a`), so
/// a visitor can keep what it found ([`ModuleExt::get_submodule_mut`] does).
pub trait VisitorMut<'a> {
    /// A parameter registered under `name`.
    fn parameter(&mut self, name: &str, p: &'a mut Parameter);
    /// A buffer registered under `name`.
    fn buffer(&mut self, name: &str, b: &'a mut Buffer);
    /// A child module registered under `name`.
    fn module(&mut self, name: &str, m: &'a mut dyn Module);
}

/// A parameter field: `Parameter`, or `Option<Parameter>` for one that may be absent
/// (`bias=None`), which is then not listed at all, as in PyTorch.
///
/// ```
/// use wgnn::{impl_module, Buffer, Device, DType, ModuleExt, Parameter, Tensor};
/// struct Affine { weight: Parameter, bias: Option<Parameter>, mask: Option<Buffer> }
/// impl_module!(Affine { parameters: [weight, bias], buffers: [mask], modules: [] });
/// let z = |n| Tensor::zeros(&[n], DType::F32, &Device::Cpu);
/// let mut m = Affine { weight: Parameter::new(z(4)?), bias: None, mask: None };
/// assert_eq!(m.state_dict()?.keys(), ["weight"]); // bias=None: absent
/// m.bias = Some(Parameter::new(z(4)?));
/// assert_eq!(m.state_dict()?.keys(), ["weight", "bias"]);
/// # Ok::<(), wgnn::Error>(())
/// ```
pub trait ParamField {
    /// Lists the field to `v` when present.
    fn visit_field<'a>(&'a self, name: &str, v: &mut dyn Visitor<'a>);
    /// The same, mutably.
    fn visit_field_mut<'a>(&'a mut self, name: &str, v: &mut dyn VisitorMut<'a>);
}
impl ParamField for Parameter {
    fn visit_field<'a>(&'a self, name: &str, v: &mut dyn Visitor<'a>) {
        v.parameter(name, self)
    }
    fn visit_field_mut<'a>(&'a mut self, name: &str, v: &mut dyn VisitorMut<'a>) {
        v.parameter(name, self)
    }
}
impl ParamField for Option<Parameter> {
    fn visit_field<'a>(&'a self, name: &str, v: &mut dyn Visitor<'a>) {
        if let Some(p) = self {
            v.parameter(name, p)
        }
    }
    fn visit_field_mut<'a>(&'a mut self, name: &str, v: &mut dyn VisitorMut<'a>) {
        if let Some(p) = self {
            v.parameter(name, p)
        }
    }
}

/// A buffer field: `Buffer`, or `Option<Buffer>` (`register_buffer(name, None)`), listed only
/// when present.
pub trait BufferField {
    /// Lists the field to `v` when present.
    fn visit_field<'a>(&'a self, name: &str, v: &mut dyn Visitor<'a>);
    /// The same, mutably.
    fn visit_field_mut<'a>(&'a mut self, name: &str, v: &mut dyn VisitorMut<'a>);
}
impl BufferField for Buffer {
    fn visit_field<'a>(&'a self, name: &str, v: &mut dyn Visitor<'a>) {
        v.buffer(name, self)
    }
    fn visit_field_mut<'a>(&'a mut self, name: &str, v: &mut dyn VisitorMut<'a>) {
        v.buffer(name, self)
    }
}
impl BufferField for Option<Buffer> {
    fn visit_field<'a>(&'a self, name: &str, v: &mut dyn Visitor<'a>) {
        if let Some(b) = self {
            v.buffer(name, b)
        }
    }
    fn visit_field_mut<'a>(&'a mut self, name: &str, v: &mut dyn VisitorMut<'a>) {
        if let Some(b) = self {
            v.buffer(name, b)
        }
    }
}

/// A module: lists its parameters, buffers and children (in declaration order) to a visitor.
/// Everything else comes from [`ModuleExt`]. Write it by hand or with [`impl_module!`](crate::impl_module).
/// Modules are `Send + Sync`, so a model can be shared with worker threads.
pub trait Module: Send + Sync {
    /// The class name PyTorch would print (`"Linear"`).
    fn type_name(&self) -> String;
    /// What goes between the parentheses of the repr (`in_features=5, out_features=16, bias=True`).
    fn extra_repr(&self) -> String {
        String::new()
    }
    /// The whole repr, for modules whose repr is not PyTorch's default (`ModuleList` folds
    /// repeated children); `None` uses the default built from `extra_repr` and the children.
    fn custom_repr(&self) -> Option<String> {
        None
    }
    /// PyTorch's `training` flag, for modules whose forward depends on it (`Dropout`,
    /// `BatchNorm1d`); `None` for the others. Set through the tree with
    /// [`ModuleExt::train`] / [`ModuleExt::eval`].
    fn training(&self) -> Option<bool> {
        None
    }
    /// Sets this module's own flag (no-op for modules without one); [`ModuleExt::train`] calls
    /// it on every module of a tree.
    fn set_training(&mut self, on: bool) {
        let _ = on;
    }
    /// Lists own parameters, buffers and children.
    fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>);
    /// The same, mutably.
    fn visit_mut<'a>(&'a mut self, v: &mut dyn VisitorMut<'a>);
    /// The module as `Any`, for code that looks for a concrete layer type in a tree
    /// ([`ModuleExt::apply`], `nn::init`); `impl_module!` provides it, hand-written modules may
    /// leave the default (`None`).
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        None
    }
}

/// Implements [`Module`] for a struct whose fields are named as in PyTorch. Every field must be
/// listed — tensors under `parameters` / `buffers`, child modules under `modules`, everything
/// else (sizes, `eps`, flags) under `other` — because the generated code destructures the
/// struct without `..`: a field left out is a compile error, never a tensor silently not saved
/// or not moved. A parameter or buffer field may be an `Option` (`bias=None`), absent from
/// `named_parameters()` and the state dict while it is `None`. A module whose forward depends on the mode names its `bool` flag with
/// `training: field` (not listed under `other`).
///
/// ```
/// use wgnn::{impl_module, Buffer, Device, DType, Module, ModuleExt, Parameter, Tensor};
/// struct Scale { weight: Parameter, running: Buffer, eps: f64 }
/// impl_module!(Scale { parameters: [weight], buffers: [running], modules: [], other: [eps] });
/// let m = Scale {
///     weight: Parameter::new(Tensor::zeros(&[3], DType::F32, &Device::Cpu)?),
///     running: Buffer::new(Tensor::zeros(&[3], DType::F32, &Device::Cpu)?),
///     eps: 1e-5,
/// };
/// assert_eq!(m.state_dict()?.keys(), ["weight", "running"]);
/// # Ok::<(), wgnn::Error>(())
/// ```
///
/// Forgetting a field does not compile:
///
/// ```compile_fail
/// use wgnn::{impl_module, Buffer, Parameter};
/// struct Scale { weight: Parameter, running: Buffer }
/// impl_module!(Scale { parameters: [weight], buffers: [], modules: [] });
/// ```
#[macro_export]
macro_rules! impl_module {
    ($ty:ident { parameters: [$($p:ident),* $(,)?], buffers: [$($b:ident),* $(,)?], modules: [$($m:ident),* $(,)?] $(, other: [$($o:ident),* $(,)?])? $(, training: $tr:ident)? $(,)? }
     $(, extra_repr = |$s:ident| $e:expr)?) => {
        impl $crate::Module for $ty {
            fn type_name(&self) -> String {
                stringify!($ty).to_string()
            }
            $(fn extra_repr(&self) -> String {
                let $s = self;
                $e
            })?
            $(fn training(&self) -> Option<bool> {
                Some(self.$tr)
            }
            fn set_training(&mut self, on: bool) {
                self.$tr = on;
            })?
            #[allow(unused_variables)]
            fn visit<'a>(&'a self, v: &mut dyn $crate::Visitor<'a>) {
                let $ty { $($p,)* $($b,)* $($m,)* $($($o: _,)*)? $($tr: _,)? } = self;
                $($crate::module::ParamField::visit_field($p, stringify!($p), v);)*
                $($crate::module::BufferField::visit_field($b, stringify!($b), v);)*
                $(v.module(stringify!($m), $m);)*
            }
            #[allow(unused_variables)]
            fn visit_mut<'a>(&'a mut self, v: &mut dyn $crate::VisitorMut<'a>) {
                let $ty { $($p,)* $($b,)* $($m,)* $($($o: _,)*)? $($tr: _,)? } = self;
                $($crate::module::ParamField::visit_field_mut($p, stringify!($p), v);)*
                $($crate::module::BufferField::visit_field_mut($b, stringify!($b), v);)*
                $(v.module(stringify!($m), $m);)*
            }
            fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
                Some(self)
            }
        }
    };
}
