//! Containers: `Sequential` / `ModuleList` (children named "0", "1", …) and `DynModule`, a module
//! whose fields are decided at run time (PyTorch's `ModuleDict`, or any module built on the fly).

use super::{Buffer, Module, Parameter, Visitor, VisitorMut};

/// Defines a container whose children are named by their index ("0", "1", …).
macro_rules! indexed_container {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Default)]
        pub struct $name {
            items: Vec<Box<dyn Module>>,
        }

        impl $name {
            /// An empty container.
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
            /// Number of children.
            pub fn len(&self) -> usize {
                self.items.len()
            }
            /// True when it has no children.
            pub fn is_empty(&self) -> bool {
                self.items.is_empty()
            }
            /// Child `i`.
            pub fn get(&self, i: usize) -> Option<&dyn Module> {
                self.items.get(i).map(|b| b.as_ref())
            }
        }

        impl Module for $name {
            fn type_name(&self) -> String {
                stringify!($name).into()
            }
            fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
                for (i, m) in self.items.iter().enumerate() {
                    v.module(&i.to_string(), m.as_ref());
                }
            }
            fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
                for (i, m) in self.items.iter_mut().enumerate() {
                    v.module(&i.to_string(), m.as_mut());
                }
            }
        }
    };
}

indexed_container!(
    /// `nn.Sequential`: children named by index.
    Sequential
);
indexed_container!(
    /// `nn.ModuleList`: children named by index, printed as `ModuleList`.
    ModuleList
);

/// A module whose parameters, buffers and children are registered at run time, under any name —
/// PyTorch's `register_parameter` / `register_buffer` / `add_module` on a plain `nn.Module`.
/// Names are checked (non-empty, no ".", unique) when the tree is walked.
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
    /// `register_parameter(name, p)`.
    pub fn register_parameter(&mut self, name: impl Into<String>, p: Parameter) -> &mut Self {
        self.params.push((name.into(), p));
        self
    }
    /// `register_buffer(name, t, persistent)`.
    pub fn register_buffer(&mut self, name: impl Into<String>, b: Buffer) -> &mut Self {
        self.buffers.push((name.into(), b));
        self
    }
    /// `add_module(name, m)`.
    pub fn add_module(&mut self, name: impl Into<String>, m: impl Module + 'static) -> &mut Self {
        self.children.push((name.into(), Box::new(m)));
        self
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
    fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
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
