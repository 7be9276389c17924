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
/// use wgnn::{Buffer, Device, DType, Module, ModuleExt, Parameter, Tensor};
/// #[derive(Module)]
/// struct Affine { weight: Parameter, bias: Option<Parameter>, mask: Option<Buffer> }
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
/// Everything else comes from [`ModuleExt`]. Modules are `Send + Sync`, so a model can be
/// shared with worker threads.
///
/// # `#[derive(Module)]`
///
/// Writes this trait for a struct whose fields are the module's attributes, named as PyTorch
/// names them. Each field is visited under its name, in declaration order:
///
/// | field | what it is |
/// |---|---|
/// | `Parameter`, `Option<Parameter>` | a parameter (`None`: absent, as `bias=None`) |
/// | `Buffer`, `Option<Buffer>` | a buffer, persistent or not as built (`Buffer::new` / `Buffer::non_persistent`) |
/// | any `M: Module`, `Option<M>`, `Vec<M>`, `Box<dyn Layer>` | a child (`Vec<M>`: a `ModuleList`, keys `name.0`, `name.1`, …) |
/// | `#[module(skip)]` | plain data (sizes, `eps`, flags): not visited |
/// | `#[module(training)]` | the `bool` flag that [`ModuleExt::train`] / [`ModuleExt::eval`] set |
/// | `#[module(name = "0")]` | the field's key, where PyTorch's is no Rust identifier |
/// | `#[module(parameter)]`, `#[module(buffer)]` | a parameter or buffer behind a type alias |
///
/// On the struct, `#[module(type_name = "Name")]` changes the printed class name (the struct's
/// name by default) and `#[module(extra_repr = method)]` names a `fn(&self) -> String` giving
/// what the repr prints between the parentheses. Generic structs work. A field that is none of
/// the above is a compile error that says what to add, so no tensor is ever silently left out
/// of the state dict or of a move.
///
/// ```
/// use wgnn::nn::{BatchNorm2d, Conv2d, Linear, ReLU};
/// use wgnn::{Buffer, Device, Layer, Module, ModuleExt, Parameter, Tensor};
///
/// #[derive(Module)]
/// #[module(extra_repr = Self::args)]
/// struct Block {
///     conv: Conv2d,
///     bn: BatchNorm2d,
///     skip: Option<Conv2d>,                  // absent when None
///     act: Box<dyn Layer>,                   // chosen at run time
///     heads: Vec<Linear>,                    // heads.0.weight, heads.1.weight, …
///     scale: Parameter,
///     mask: Buffer,                          // register_buffer("mask", …)
///     #[module(name = "0")]
///     first: ReLU,
///     #[module(skip)]
///     c_out: usize,
/// }
/// impl Block {
///     fn args(&self) -> String {
///         format!("c_out={}", self.c_out)
///     }
/// }
///
/// let block = Block {
///     conv: Conv2d::new(3, 8, 3)?,
///     bn: BatchNorm2d::new(8)?,
///     skip: None,
///     act: Box::new(ReLU::new()),
///     heads: vec![Linear::new(8, 2)?, Linear::new(8, 2)?],
///     scale: Parameter::new(Tensor::full(&[8], 1f32, &Device::Cpu)?),
///     mask: Buffer::non_persistent(Tensor::full(&[3, 3], 1f32, &Device::Cpu)?),
///     first: ReLU::new(),
///     c_out: 8,
/// };
/// let sd = block.state_dict()?;
/// let keys = sd.keys();
/// assert_eq!(keys[..4], ["scale", "conv.weight", "conv.bias", "bn.weight"]);
/// assert!(keys.contains(&"heads.1.bias") && !keys.contains(&"mask"));
/// assert_eq!(block.named_buffers()[0].0, "mask"); // non-persistent: a buffer, not saved
/// assert!(block.repr().starts_with("Block(\n  c_out=8\n  (conv): Conv2d(3, 8"));
///
/// // Generic modules work too.
/// #[derive(Module)]
/// struct Residual<M> { inner: M }
/// let r = Residual { inner: Linear::new(4, 4)? };
/// assert_eq!(r.state_dict()?.keys(), ["inner.weight", "inner.bias"]);
/// # Ok::<(), wgnn::Error>(())
/// ```
///
/// A field that is no module, parameter or buffer, and not marked, does not compile:
///
/// ```compile_fail
/// use wgnn::{nn::Linear, Module};
/// #[derive(Module)]
/// struct Net { fc: Linear, hidden: usize } // `usize` is not a Module: add #[module(skip)]
/// ```
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
    /// ([`ModuleExt::apply`], `nn::init`); `#[derive(Module)]` provides it, hand-written modules may
    /// leave the default (`None`).
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        None
    }
}

/// A child field of a `#[derive(Module)]` struct: any [`Module`] (listed under the field's
/// name), `Option<M>` (listed only when present, as PyTorch's `None` attribute is no module),
/// `Vec<M>` (a `ModuleList`: keys `name.0`, `name.1`, …) and `Box<dyn Layer>` /
/// `Box<dyn Module>` (modules chosen at run time).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a module, a parameter or a buffer, so #[derive(Module)] cannot visit it",
    label = "not a Module, Parameter or Buffer",
    note = "mark plain data (sizes, eps, flags) with #[module(skip)], the training flag with #[module(training)]; a parameter or buffer behind a type alias with #[module(parameter)] or #[module(buffer)]"
)]
pub trait Child: Send + Sync {
    /// Lists the field to `v` under `name` when present.
    fn visit_child<'a>(&'a self, name: &str, v: &mut dyn Visitor<'a>);
    /// The same, mutably.
    fn visit_child_mut<'a>(&'a mut self, name: &str, v: &mut dyn VisitorMut<'a>);
}
impl<M: Module> Child for M {
    fn visit_child<'a>(&'a self, name: &str, v: &mut dyn Visitor<'a>) {
        v.module(name, self)
    }
    fn visit_child_mut<'a>(&'a mut self, name: &str, v: &mut dyn VisitorMut<'a>) {
        v.module(name, self)
    }
}
impl<M: Module> Child for Option<M> {
    fn visit_child<'a>(&'a self, name: &str, v: &mut dyn Visitor<'a>) {
        if let Some(m) = self {
            v.module(name, m)
        }
    }
    fn visit_child_mut<'a>(&'a mut self, name: &str, v: &mut dyn VisitorMut<'a>) {
        if let Some(m) = self {
            v.module(name, m)
        }
    }
}

/// Delegates every method to the boxed module, so a boxed layer is a module of its own (with
/// [`ModuleExt`]: `to_device`, `repr`, `num_parameters`) and downcasts to its concrete type.
macro_rules! boxed_module {
    ($ty:ty) => {
        impl Module for Box<$ty> {
            fn type_name(&self) -> String {
                (**self).type_name()
            }
            fn extra_repr(&self) -> String {
                (**self).extra_repr()
            }
            fn custom_repr(&self) -> Option<String> {
                (**self).custom_repr()
            }
            fn training(&self) -> Option<bool> {
                (**self).training()
            }
            fn set_training(&mut self, on: bool) {
                (**self).set_training(on)
            }
            fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
                (**self).visit(v)
            }
            fn visit_mut<'a>(&'a mut self, v: &mut dyn VisitorMut<'a>) {
                (**self).visit_mut(v)
            }
            fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
                (**self).as_any_mut()
            }
        }
    };
}
boxed_module!(dyn Layer);
boxed_module!(dyn Module);

impl Forward for Box<dyn Layer> {
    fn forward(&mut self, x: &crate::Tensor) -> crate::Result<crate::Tensor> {
        (**self).forward(x)
    }
    fn forward_fused(
        &mut self,
        next: &mut dyn Module,
        x: &crate::Tensor,
    ) -> Option<crate::Result<crate::Tensor>> {
        (**self).forward_fused(next, x)
    }
    fn is_identity(&self) -> bool {
        (**self).is_identity()
    }
}
