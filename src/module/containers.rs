//! Containers: `Sequential` / `ModuleList` (children named "0", "1", …) and `DynModule`, a module
//! whose fields are decided at run time (PyTorch's `ModuleDict`, or any module built on the fly).

use super::walk::{name_problem, NAME_TAKEN};
use super::{Buffer, Forward, Layer, Module, Parameter, Visitor, VisitorMut};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The accessors `Sequential` and `ModuleList` share: children named by index, typed.
macro_rules! indexed_items {
    ($name:ident, $bound:ident, $from_doc:literal) => {
        impl<M: $bound> $name<M> {
            #[doc = $from_doc]
            pub fn from_items(items: Vec<M>) -> Self {
                $name { items }
            }
            /// Appends a child.
            pub fn push_item(&mut self, m: M) {
                self.items.push(m);
            }
            /// Number of children.
            pub fn len(&self) -> usize {
                self.items.len()
            }
            /// True when it has no children.
            pub fn is_empty(&self) -> bool {
                self.items.is_empty()
            }
            /// Child `i`.
            pub fn get(&self, i: usize) -> Option<&M> {
                self.items.get(i)
            }
            /// Child `i`, mutably (to run or change it).
            pub fn get_mut(&mut self, i: usize) -> Option<&mut M> {
                self.items.get_mut(i)
            }
            /// The children in order.
            pub fn iter(&self) -> std::slice::Iter<'_, M> {
                self.items.iter()
            }
            /// The children in order, mutably.
            pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, M> {
                self.items.iter_mut()
            }
        }
    };
}

/// Lists indexed children ("0", "1", …) to a visitor.
fn visit_items<'a, M: ListItem>(items: &'a [M], v: &mut dyn Visitor<'a>) {
    for (i, m) in items.iter().enumerate() {
        v.module(&i.to_string(), m.as_module());
    }
}

/// The same, mutably.
fn visit_items_mut<'a, M: ListItem>(items: &'a mut [M], v: &mut dyn VisitorMut<'a>) {
    for (i, m) in items.iter_mut().enumerate() {
        v.module(&i.to_string(), m.as_module_mut());
    }
}

/// What a [`Sequential`] can hold: any layer type (`Sequential<Block>`, typed), or boxed layers
/// of mixed types (`Sequential`, the default).
pub trait SeqItem: ListItem {
    /// Runs the item's forward.
    fn forward_item(&mut self, x: &Tensor) -> Result<Tensor>;
    /// [`Forward::forward_fused`] of the item with the next one.
    fn forward_pair(&mut self, next: &mut dyn Module, x: &Tensor) -> Option<Result<Tensor>>;
    /// [`Forward::is_identity`] of the item.
    fn identity_item(&self) -> bool;
}
impl<M: Layer> SeqItem for M {
    fn forward_item(&mut self, x: &Tensor) -> Result<Tensor> {
        self.forward(x)
    }
    fn forward_pair(&mut self, next: &mut dyn Module, x: &Tensor) -> Option<Result<Tensor>> {
        self.forward_fused(next, x)
    }
    fn identity_item(&self) -> bool {
        self.is_identity()
    }
}

/// `nn.Sequential`: layers named by index ("0", "1", …), run in order by
/// [`Forward::forward`]. `Sequential` holds boxed layers of any types; `Sequential<Block>`
/// holds one type and gives it back typed.
pub struct Sequential<M: SeqItem = Box<dyn Layer>> {
    items: Vec<M>,
}

impl<M: SeqItem> Default for Sequential<M> {
    fn default() -> Self {
        Sequential { items: Vec::new() }
    }
}

impl Sequential {
    /// An empty container of boxed layers.
    pub fn new() -> Self {
        Self::default()
    }
    /// Appends a layer (named by its index), builder style.
    pub fn push(mut self, m: impl Layer + 'static) -> Self {
        self.items.push(Box::new(m));
        self
    }
    /// Appends a boxed layer.
    pub fn append(&mut self, m: Box<dyn Layer>) {
        self.items.push(m);
    }
    /// Appends a boxed layer, builder style (a layer chosen at run time, as an activation
    /// picked by name).
    pub fn push_boxed(mut self, m: Box<dyn Layer>) -> Self {
        self.items.push(m);
        self
    }
}

indexed_items!(
    Sequential,
    SeqItem,
    "A container of these layers, in order."
);

impl<M: SeqItem> Module for Sequential<M> {
    fn type_name(&self) -> String {
        "Sequential".into()
    }
    fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
        visit_items(&self.items, v);
    }
    fn visit_mut<'a>(&'a mut self, v: &mut dyn VisitorMut<'a>) {
        visit_items_mut(&mut self.items, v);
    }
}

impl<M: SeqItem> Forward for Sequential<M> {
    /// Runs the layers in order; where a layer and the next one that is not an identity
    /// (an eval-mode `Dropout` is) have a fused kernel that gives their bits
    /// ([`Forward::forward_fused`]: an eval-mode `BatchNorm2d` then a `ReLU`, a `Linear` then a
    /// `ReLU`), the pair runs as one pass.
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        let mut i = 0;
        while i < self.items.len() {
            let mut j = i + 1;
            while j < self.items.len() && self.items[j].identity_item() {
                j += 1;
            }
            let (head, tail) = self.items.split_at_mut(i + 1);
            if let Some(next) = tail.get_mut(j - i - 1) {
                if let Some(y) = head[i].forward_pair(next.as_module_mut(), &h) {
                    h = y?;
                    i = j + 1;
                    continue;
                }
            }
            h = head[i].forward_item(&h)?;
            i += 1;
        }
        Ok(h)
    }
}

/// What a [`ModuleList`] can hold: any module type (a typed list, `ModuleList<Block>`), or boxed
/// modules of mixed types (`ModuleList`, the default).
pub trait ListItem: Send + Sync {
    /// The item as a module.
    fn as_module(&self) -> &dyn Module;
    /// The item as a module, mutably.
    fn as_module_mut(&mut self) -> &mut dyn Module;
}
impl<M: Module> ListItem for M {
    fn as_module(&self) -> &dyn Module {
        self
    }
    fn as_module_mut(&mut self) -> &mut dyn Module {
        self
    }
}

/// `nn.ModuleList`: children named by index, printed as PyTorch ≥ 2.0 prints it (runs of
/// identical children folded into `(0-2): 3 x Block(...)`). `ModuleList` holds boxed modules of
/// any types; `ModuleList<Block>` holds one type and gives it back typed, so the caller can run
/// each block's own forward:
///
/// ```
/// use wgnn::{nn::Linear, Device, ModuleExt, ModuleList};
/// let mut layers: ModuleList<Linear> = ModuleList::from_items(vec![
///     Linear::new(2, 3)?,
///     Linear::new(3, 3)?,
/// ]);
/// assert_eq!(layers.get(1).map(|l| l.weight.tensor().shape().to_vec()), Some(vec![3, 3]));
/// assert_eq!(layers.state_dict()?.keys()[2], "1.weight");
/// for l in layers.iter_mut() {
///     l.bias = None; // bias=False
/// }
/// assert_eq!(layers.state_dict()?.len(), 2);
/// # Ok::<(), wgnn::Error>(())
/// ```
pub struct ModuleList<M: ListItem = Box<dyn Module>> {
    items: Vec<M>,
}

impl<M: ListItem> Default for ModuleList<M> {
    fn default() -> Self {
        ModuleList { items: Vec::new() }
    }
}

impl ModuleList {
    /// An empty list of boxed modules.
    pub fn new() -> Self {
        Self::default()
    }
    /// Appends a child (named by its index), builder style.
    pub fn push(mut self, m: impl Module + 'static) -> Self {
        self.items.push(Box::new(m));
        self
    }
    /// Appends a boxed child.
    pub fn append(&mut self, m: Box<dyn Module>) {
        self.items.push(m);
    }
}

indexed_items!(ModuleList, ListItem, "A list of these items, in order.");

/// PyTorch's `ModuleList.__repr__`: consecutive children with equal reprs are one line.
fn folded_repr<M: ListItem>(items: &[M]) -> String {
    if items.is_empty() {
        return "ModuleList()".into();
    }
    let reprs: Vec<String> = items
        .iter()
        .map(|m| super::print::repr(m.as_module()))
        .collect();
    let mut runs: Vec<(usize, usize, &str)> = Vec::new();
    for (i, r) in reprs.iter().enumerate() {
        match runs.last_mut() {
            Some(last) if last.2 == r => last.1 = i,
            _ => runs.push((i, i, r)),
        }
    }
    let lines: Vec<String> = runs
        .into_iter()
        .map(|(a, b, r)| {
            let line = if a == b {
                format!("({a}): {r}")
            } else {
                format!("({a}-{b}): {} x {r}", b - a + 1)
            };
            super::print::add_indent(&line, 2)
        })
        .collect();
    format!("ModuleList(\n  {}\n)", lines.join("\n  "))
}

impl<M: ListItem> Module for ModuleList<M> {
    fn type_name(&self) -> String {
        "ModuleList".into()
    }
    fn custom_repr(&self) -> Option<String> {
        Some(folded_repr(&self.items))
    }
    fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
        visit_items(&self.items, v);
    }
    fn visit_mut<'a>(&'a mut self, v: &mut dyn VisitorMut<'a>) {
        visit_items_mut(&mut self.items, v);
    }
}

/// A `Vec` of modules is PyTorch's `nn.ModuleList` of one type: children "0", "1", …, printed
/// as `ModuleList`. A `Vec<M>` field of a `#[derive(Module)]` struct is listed under its field
/// name, so its keys are `name.0.weight`, `name.1.weight`, ….
impl<M: Module> Module for Vec<M> {
    fn type_name(&self) -> String {
        "ModuleList".into()
    }
    fn custom_repr(&self) -> Option<String> {
        Some(folded_repr(self))
    }
    fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
        visit_items(self, v);
    }
    fn visit_mut<'a>(&'a mut self, v: &mut dyn VisitorMut<'a>) {
        visit_items_mut(self, v);
    }
}

/// A module whose parameters, buffers and children are registered at run time, under any name —
/// PyTorch's `register_parameter` / `register_buffer` / `add_module` on a plain `nn.Module`.
/// Names are checked when they are registered (non-empty, no ".", not used by another kind of
/// entry), as PyTorch raises in `register_buffer`; registering a name again replaces the entry,
/// and [`DynModule::remove`] is `del m.name`.
pub struct DynModule {
    type_name: String,
    extra: String,
    params: Vec<(String, Parameter)>,
    buffers: Vec<(String, Buffer)>,
    children: Vec<(String, Box<dyn Module>)>,
}

impl DynModule {
    /// An empty module printed as `type_name`.
    pub fn new(type_name: impl Into<String>) -> Self {
        DynModule {
            type_name: type_name.into(),
            extra: String::new(),
            params: vec![],
            buffers: vec![],
            children: vec![],
        }
    }
    /// Sets what the repr shows in parentheses.
    pub fn with_extra_repr(mut self, extra: impl Into<String>) -> Self {
        self.extra = extra.into();
        self
    }
    /// Where `name` is registered already: 0 parameter, 1 buffer, 2 child.
    fn slot_of(&self, name: &str) -> Option<(usize, usize)> {
        if let Some(i) = self.params.iter().position(|p| p.0 == name) {
            return Some((0, i));
        }
        if let Some(i) = self.buffers.iter().position(|b| b.0 == name) {
            return Some((1, i));
        }
        self.children
            .iter()
            .position(|c| c.0 == name)
            .map(|i| (2, i))
    }
    /// Checks a name for registering as `kind` (0 parameter, 1 buffer, 2 child): `Some(i)`
    /// when an entry of the same kind has it (PyTorch replaces it), an error when it is
    /// invalid or another kind has it (PyTorch raises `KeyError: attribute already exists`).
    fn check_new(&self, name: &str, kind: usize) -> Result<Option<usize>> {
        let err = |reason: &str| Error::InvalidName {
            module: self.type_name.clone(),
            name: name.to_string(),
            reason: format!("cannot register it: {reason}"),
        };
        if let Some(reason) = name_problem(name) {
            return Err(err(reason));
        }
        match self.slot_of(name) {
            None => Ok(None),
            Some((k, i)) if k == kind => Ok(Some(i)),
            Some(_) => Err(err(NAME_TAKEN)),
        }
    }
    /// `register_parameter(name, p)`: an invalid name, or one a buffer or child has, is an
    /// error; a parameter of that name is replaced (in place, keeping its position).
    pub fn register_parameter(
        &mut self,
        name: impl Into<String>,
        p: Parameter,
    ) -> Result<&mut Self> {
        let name = name.into();
        match self.check_new(&name, 0)? {
            Some(i) => self.params[i].1 = p,
            None => self.params.push((name, p)),
        }
        Ok(self)
    }
    /// `register_buffer(name, t, persistent)`: as PyTorch, re-registering a buffer replaces it,
    /// and a name a parameter or child has is an error.
    ///
    /// ```
    /// use wgnn::{Buffer, Device, DType, DynModule, ModuleExt, Parameter, Tensor};
    /// let z = |n| Tensor::zeros(&[n], DType::F32, &Device::Cpu);
    /// let mut m = DynModule::new("M");
    /// m.register_buffer("running", Buffer::new(z(3)?))?;
    /// m.register_buffer("running", Buffer::non_persistent(z(5)?))?; // replaced
    /// assert_eq!(m.get_buffer("running")?.tensor().shape(), [5]);
    /// m.register_parameter("w", Parameter::new(z(1)?))?;
    /// assert!(m.register_buffer("w", Buffer::new(z(1)?)).is_err()); // KeyError in PyTorch
    /// m.remove("running")?; // `del m.running`
    /// assert!(m.named_buffers().is_empty());
    /// # Ok::<(), wgnn::Error>(())
    /// ```
    pub fn register_buffer(&mut self, name: impl Into<String>, b: Buffer) -> Result<&mut Self> {
        let name = name.into();
        match self.check_new(&name, 1)? {
            Some(i) => self.buffers[i].1 = b,
            None => self.buffers.push((name, b)),
        }
        Ok(self)
    }
    /// `add_module(name, m)`: a child of that name is replaced; a parameter's or buffer's name
    /// is an error.
    pub fn add_module(
        &mut self,
        name: impl Into<String>,
        m: impl Module + 'static,
    ) -> Result<&mut Self> {
        let name = name.into();
        match self.check_new(&name, 2)? {
            Some(i) => self.children[i].1 = Box::new(m),
            None => self.children.push((name, Box::new(m))),
        }
        Ok(self)
    }
    /// `del m.name`: removes the parameter, buffer or child of that name; an error naming
    /// what exists when there is none.
    pub fn remove(&mut self, name: &str) -> Result<&mut Self> {
        match self.slot_of(name) {
            Some((0, i)) => drop(self.params.remove(i)),
            Some((1, i)) => drop(self.buffers.remove(i)),
            Some((_, i)) => drop(self.children.remove(i)),
            None => {
                return Err(Error::NotFound {
                    kind: "attribute",
                    path: name.into(),
                    missing: name.into(),
                    parent: String::new(),
                    available: self
                        .params
                        .iter()
                        .map(|p| p.0.clone())
                        .chain(self.buffers.iter().map(|b| b.0.clone()))
                        .chain(self.children.iter().map(|c| c.0.clone()))
                        .collect(),
                })
            }
        }
        Ok(self)
    }
}

impl Module for DynModule {
    fn type_name(&self) -> String {
        self.type_name.clone()
    }
    fn extra_repr(&self) -> String {
        self.extra.clone()
    }
    fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
        for (n, p) in &self.params {
            v.parameter(n, p);
        }
        for (n, b) in &self.buffers {
            v.buffer(n, b);
        }
        for (n, m) in &self.children {
            v.module(n, m.as_ref());
        }
    }
    fn visit_mut<'a>(&'a mut self, v: &mut dyn VisitorMut<'a>) {
        for (n, p) in &mut self.params {
            v.parameter(n, p);
        }
        for (n, b) in &mut self.buffers {
            v.buffer(n, b);
        }
        for (n, m) in &mut self.children {
            v.module(n, m.as_mut());
        }
    }
}

// Modules, containers included, can be shared with and sent to other threads.
const _: () = {
    const fn send_sync<T: Send + Sync + ?Sized>() {}
    send_sync::<Sequential>();
    send_sync::<ModuleList>();
    send_sync::<DynModule>();
    send_sync::<dyn Module>();
    send_sync::<crate::Tensor>();
};

/// `nn.Sequential(a, b, c)`: a [`Sequential`] of boxed layers, in order.
///
/// ```
/// use wgnn::nn::{Linear, ReLU};
/// use wgnn::{seq, ModuleExt};
/// let mlp = seq![Linear::new(4, 8)?, ReLU::new(), Linear::new(8, 2)?];
/// assert_eq!(mlp.state_dict()?.keys(), ["0.weight", "0.bias", "2.weight", "2.bias"]);
/// # Ok::<(), wgnn::Error>(())
/// ```
#[macro_export]
macro_rules! seq {
    ($($layer:expr),* $(,)?) => {
        $crate::Sequential::new()$(.push($layer))*
    };
}
