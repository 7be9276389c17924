//! A pickle reader that executes nothing: a stack machine over an arena of nodes, which knows
//! the opcodes `torch.save` writes (protocols 2–5) and calls only the globals of an allow-list
//! — the tensor rebuild functions, the storage classes, `collections.OrderedDict`, `torch.Size`,
//! and the numpy scalar / dtype and `_codecs.encode` that Lightning checkpoints carry for
//! learning rates. Any other global (`os.system`, `builtins.eval`, a `__main__` class of a
//! whole-module save, …) is refused by name, as is every opcode it does not know.
//!
//! A caller may name more globals to accept ([`super::LoadOptions`]): those are never called
//! either, but read as inert values — a class instantiated with `REDUCE` / `NEWOBJ` becomes an
//! [`Node::Object`] holding its arguments, the items `SETITEMS` / `APPENDS` give it and the
//! state `BUILD` sets; a class named as a value stays a [`Node::Class`].
//!
//! Bounded: every length is checked against the bytes left before anything is allocated,
//! containers nest at most [`MAX_DEPTH`] deep, and the arena grows by at most one node an opcode.

use std::collections::HashMap;

use crate::dtype::DType;
use crate::error::{Error, Result};

/// Modules whose globals run commands or code (or reach what does): a pickle naming one is
/// refused without the hint to allow it that other unknown classes get (a project's config
/// class, `pathlib.PosixPath` or `functools.partial` among hyper-parameters keep the hint).
const RUNS_CODE: &[&str] = &[
    "os",
    "posix",
    "nt",
    "subprocess",
    "builtins",
    "__builtin__",
    "sys",
    "shutil",
    "socket",
    "importlib",
    "runpy",
    "pickle",
    "_pickle",
    "code",
    "codeop",
    "pty",
    "ctypes",
    "webbrowser",
    "marshal",
    "multiprocessing",
    "threading",
    "asyncio",
    "signal",
    "commands",
    "popen2",
];

/// Deepest nesting of containers accepted.
pub(crate) const MAX_DEPTH: usize = 200;

pub(crate) type Id = usize;

/// The callables of the allow-list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Global {
    RebuildTensorV2,
    RebuildParameter,
    Storage(DType),
    OrderedDict,
    TorchSize,
    NumpyScalar,
    NumpyDtype,
    CodecsEncode,
    /// `builtins.set` / `frozenset` (`__builtin__` in protocol 2): plain data, on PyTorch's
    /// `weights_only` allow-list.
    Set,
    /// `builtins.bytearray`.
    Bytearray,
    /// `builtins.complex`.
    Complex,
}

fn global(module: &str, name: &str) -> Option<Global> {
    use DType::*;
    Some(match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch", "Size") => Global::TorchSize,
        ("numpy.core.multiarray" | "numpy._core.multiarray", "scalar") => Global::NumpyScalar,
        ("numpy", "dtype") => Global::NumpyDtype,
        ("_codecs", "encode") => Global::CodecsEncode,
        ("builtins" | "__builtin__", "set" | "frozenset") => Global::Set,
        ("builtins" | "__builtin__", "bytearray") => Global::Bytearray,
        ("builtins" | "__builtin__", "complex") => Global::Complex,
        ("torch", storage) => Global::Storage(match storage {
            "FloatStorage" => F32,
            "HalfStorage" => F16,
            "BFloat16Storage" => BF16,
            "DoubleStorage" => F64,
            "LongStorage" => I64,
            "IntStorage" => I32,
            "ShortStorage" => I16,
            "CharStorage" => I8,
            "ByteStorage" => U8,
            "BoolStorage" => Bool,
            _ => return None,
        }),
        _ => return None,
    })
}

/// A tensor as the pickle describes it: a view of a storage.
#[derive(Clone, Debug)]
pub(crate) struct TensorNode {
    pub storage: Id,
    pub offset: u64,
    pub shape: Vec<u64>,
    pub stride: Vec<u64>,
    pub requires_grad: bool,
    pub is_parameter: bool,
}

/// One object of the pickle. Containers hold the ids of their items, so an object referenced
/// twice (the memo) is one node, as in Python.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    /// `set` / `frozenset`, in the pickle's order.
    Set(Vec<Id>),
    /// `complex(real, imag)`.
    Complex(f64, f64),
    Dict(Vec<(Id, Id)>),
    Global(Global),
    /// `(key, dtype, element count)` of a persistent storage.
    Storage(String, DType, u64),
    Tensor(TensorNode),
    /// A numpy dtype by its string (`"f8"`).
    NumpyDtype(String),
    /// A global the caller allowed, by its dotted name; never called.
    Class(String),
    /// An instance of an allowed class, as the pickle built it: nothing of the class runs.
    Object(Object),
}

/// What the pickle gives an instance of an allowed class.
#[derive(Clone, Debug, Default)]
pub(crate) struct Object {
    pub class: String,
    /// The arguments of `REDUCE` / `NEWOBJ`.
    pub args: Vec<Id>,
    /// Items added with `SETITEM(S)`: the instance is a dict subclass.
    pub dict: Option<Vec<(Id, Id)>>,
    /// Items added with `APPEND(S)`: a list subclass.
    pub list: Option<Vec<Id>>,
    /// What `BUILD` set (`__setstate__` / `__dict__`).
    pub state: Option<Id>,
}

enum Slot {
    Mark,
    Node(Id),
}

/// The result of one pickle: its nodes and the root.
pub(crate) struct Pickle {
    pub nodes: Vec<Node>,
    pub root: Id,
}

fn bad(what: impl Into<String>) -> Error {
    super::fmt_err(format!("pickle: {}", what.into()))
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let left = (self.data.len() - self.pos) as u64;
        if n > left {
            return Err(bad(format!(
                "a length of {n} bytes at offset {} runs past the end ({left} bytes left)",
                self.pos
            )));
        }
        let s = &self.data[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn le(&mut self, n: usize) -> Result<u64> {
        let b = self.take(n as u64)?;
        Ok(b.iter().rev().fold(0u64, |a, &x| (a << 8) | x as u64))
    }
    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("a text argument has no end of line"))?;
        self.pos += end + 1;
        std::str::from_utf8(&rest[..end]).map_err(|_| bad("a text argument is not UTF-8"))
    }
}

struct Machine<'a> {
    r: Reader<'a>,
    /// Dotted names of the globals the caller allowed beyond the built-in list.
    extra: &'a [String],
    nodes: Vec<Node>,
    depth: Vec<usize>,
    stack: Vec<Slot>,
    memo: HashMap<u64, Id>,
    /// Resolves a persistent id (the tuple node) to a node.
    persistent: &'a mut dyn FnMut(&[Node], Id) -> Result<Node>,
}

impl Machine<'_> {
    fn push(&mut self, n: Node) -> Result<()> {
        let depth = match &n {
            Node::List(v) | Node::Tuple(v) | Node::Set(v) => {
                v.iter().map(|&i| self.depth[i]).max().unwrap_or(0) + 1
            }
            Node::Dict(v) => {
                v.iter()
                    .map(|&(k, x)| self.depth[k].max(self.depth[x]))
                    .max()
                    .unwrap_or(0)
                    + 1
            }
            Node::Object(o) => o.args.iter().map(|&i| self.depth[i]).max().unwrap_or(0) + 1,
            _ => 0,
        };
        if depth > MAX_DEPTH {
            return Err(bad(format!("containers nested more than {MAX_DEPTH} deep")));
        }
        self.nodes.push(n);
        self.depth.push(depth);
        self.stack.push(Slot::Node(self.nodes.len() - 1));
        Ok(())
    }
    fn pop(&mut self) -> Result<Id> {
        match self.stack.pop() {
            Some(Slot::Node(i)) => Ok(i),
            Some(Slot::Mark) => Err(bad("a mark where an object was expected")),
            None => Err(bad("stack underflow")),
        }
    }
    fn top(&self) -> Result<Id> {
        match self.stack.last() {
            Some(Slot::Node(i)) => Ok(*i),
            _ => Err(bad("no object on the stack")),
        }
    }
    /// The objects above the topmost mark (the mark removed).
    fn pop_mark(&mut self) -> Result<Vec<Id>> {
        let at = self
            .stack
            .iter()
            .rposition(|s| matches!(s, Slot::Mark))
            .ok_or_else(|| bad("no mark on the stack"))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items
            .into_iter()
            .filter_map(|s| match s {
                Slot::Node(i) => Some(i),
                Slot::Mark => None,
            })
            .collect())
    }
    /// Grows container `c` by `items` (append or set items), re-checking its depth.
    fn extend(&mut self, c: Id, items: Vec<Id>, pairs: bool) -> Result<()> {
        let child = items.iter().map(|&i| self.depth[i]).max().unwrap_or(0) + 1;
        if child > MAX_DEPTH {
            return Err(bad(format!("containers nested more than {MAX_DEPTH} deep")));
        }
        self.depth[c] = self.depth[c].max(child);
        if pairs && !items.len().is_multiple_of(2) {
            return Err(bad("SETITEMS with an odd number of objects"));
        }
        match (&mut self.nodes[c], pairs) {
            (Node::List(v) | Node::Set(v), false) => v.extend(items),
            (Node::Object(o), false) => o.list.get_or_insert_with(Vec::new).extend(items),
            (Node::Dict(v), true) => v.extend(items.chunks(2).map(|kv| (kv[0], kv[1]))),
            (Node::Object(o), true) => o
                .dict
                .get_or_insert_with(Vec::new)
                .extend(items.chunks(2).map(|kv| (kv[0], kv[1]))),
            (n, _) => return Err(bad(format!("cannot add items to {}", kind_name(n)))),
        }
        Ok(())
    }
    fn int_of(&self, i: Id, what: &str) -> Result<i128> {
        match &self.nodes[i] {
            Node::Int(v) => Ok(*v),
            Node::Bool(b) => Ok(*b as i128),
            n => Err(bad(format!("{what} must be an int, got {}", kind_name(n)))),
        }
    }
    fn items_of(&self, i: Id, what: &str) -> Result<Vec<Id>> {
        match &self.nodes[i] {
            Node::Tuple(v) | Node::List(v) => Ok(v.clone()),
            n => Err(bad(format!("{what} must be a tuple, got {}", kind_name(n)))),
        }
    }
    fn u64s(&self, i: Id, what: &str) -> Result<Vec<u64>> {
        self.items_of(i, what)?
            .into_iter()
            .map(|x| {
                let v = self.int_of(x, what)?;
                u64::try_from(v)
                    .map_err(|_| bad(format!("{what} has a negative or huge entry {v}")))
            })
            .collect()
    }

    fn call(&mut self, f: Global, args: Id) -> Result<Node> {
        let a = self.items_of(args, "the arguments of a call")?;
        let arg = |i: usize| -> Result<Id> {
            a.get(i)
                .copied()
                .ok_or_else(|| bad(format!("{f:?} needs more than {} arguments", a.len())))
        };
        Ok(match f {
            Global::RebuildTensorV2 => {
                let storage = arg(0)?;
                if !matches!(self.nodes[storage], Node::Storage(..)) {
                    return Err(bad("_rebuild_tensor_v2 of something that is not a storage"));
                }
                let offset = u64::try_from(self.int_of(arg(1)?, "storage_offset")?)
                    .map_err(|_| bad("negative storage offset"))?;
                let shape = self.u64s(arg(2)?, "size")?;
                let stride = self.u64s(arg(3)?, "stride")?;
                if shape.len() != stride.len() {
                    return Err(bad(format!(
                        "size {shape:?} and stride {stride:?} have different ranks"
                    )));
                }
                let requires_grad = matches!(self.nodes[arg(4)?], Node::Bool(true));
                Node::Tensor(TensorNode {
                    storage,
                    offset,
                    shape,
                    stride,
                    requires_grad,
                    is_parameter: false,
                })
            }
            Global::RebuildParameter => match &self.nodes[arg(0)?] {
                Node::Tensor(t) => Node::Tensor(TensorNode {
                    requires_grad: matches!(self.nodes[arg(1)?], Node::Bool(true)),
                    is_parameter: true,
                    ..t.clone()
                }),
                n => return Err(bad(format!("_rebuild_parameter of {}", kind_name(n)))),
            },
            Global::OrderedDict => {
                let mut pairs = Vec::new();
                if let Ok(items) = arg(0) {
                    for p in self.items_of(items, "OrderedDict's items")? {
                        let kv = self.items_of(p, "an item of OrderedDict")?;
                        if kv.len() != 2 {
                            return Err(bad("an OrderedDict item that is not a pair"));
                        }
                        pairs.push((kv[0], kv[1]));
                    }
                }
                Node::Dict(pairs)
            }
            Global::TorchSize => Node::Tuple(match a.first() {
                Some(&t) => self.items_of(t, "torch.Size")?,
                None => vec![],
            }),
            Global::NumpyDtype => match &self.nodes[arg(0)?] {
                Node::Str(s) => Node::NumpyDtype(s.clone()),
                n => return Err(bad(format!("numpy.dtype of {}", kind_name(n)))),
            },
            Global::NumpyScalar => {
                let code = match &self.nodes[arg(0)?] {
                    Node::NumpyDtype(s) => s.clone(),
                    n => return Err(bad(format!("numpy scalar of dtype {}", kind_name(n)))),
                };
                let bytes = match &self.nodes[arg(1)?] {
                    Node::Bytes(b) => b.clone(),
                    n => return Err(bad(format!("numpy scalar from {}", kind_name(n)))),
                };
                numpy_scalar(&code, &bytes)?
            }
            Global::CodecsEncode => {
                let s = match &self.nodes[arg(0)?] {
                    Node::Str(s) => s.clone(),
                    n => return Err(bad(format!("_codecs.encode of {}", kind_name(n)))),
                };
                let enc = match a.get(1).map(|&i| &self.nodes[i]) {
                    Some(Node::Str(e)) => e.to_ascii_lowercase(),
                    None => "utf-8".into(),
                    Some(n) => {
                        return Err(bad(format!(
                            "_codecs.encode with encoding {}",
                            kind_name(n)
                        )))
                    }
                };
                match enc.as_str() {
                    "latin1" | "latin-1" | "iso-8859-1" => Node::Bytes(
                        s.chars()
                            .map(|c| {
                                u8::try_from(c as u32).map_err(|_| {
                                    bad("a latin1 string with a character above U+00FF")
                                })
                            })
                            .collect::<Result<_>>()?,
                    ),
                    "utf-8" | "utf8" => Node::Bytes(s.into_bytes()),
                    e => return Err(bad(format!("_codecs.encode with encoding {e:?}"))),
                }
            }
            Global::Storage(_) => {
                return Err(bad("a storage class called as a function"));
            }
            Global::Set => Node::Set(match a.first() {
                Some(&t) => match &self.nodes[t] {
                    Node::Set(v) => v.clone(),
                    _ => self.items_of(t, "set's items")?,
                },
                None => vec![],
            }),
            Global::Bytearray => match a.first().map(|&i| &self.nodes[i]) {
                None => Node::Bytes(vec![]),
                Some(Node::Bytes(b)) => Node::Bytes(b.clone()),
                // Protocol 2 writes bytearray(u'…', 'latin-1').
                Some(Node::Str(s)) => Node::Bytes(
                    s.chars()
                        .map(|c| {
                            u8::try_from(c as u32).map_err(|_| {
                                bad("a bytearray string with a character above U+00FF")
                            })
                        })
                        .collect::<Result<_>>()?,
                ),
                Some(n) => return Err(bad(format!("bytearray of {}", kind_name(n)))),
            },
            Global::Complex => {
                let part = |k: usize| -> Result<f64> {
                    match a.get(k).map(|&i| &self.nodes[i]) {
                        None => Ok(0.0),
                        Some(Node::Float(f)) => Ok(*f),
                        Some(Node::Int(i)) => Ok(*i as f64),
                        Some(Node::Bool(b)) => Ok(*b as u8 as f64),
                        Some(n) => Err(bad(format!("complex of {}", kind_name(n)))),
                    }
                };
                Node::Complex(part(0)?, part(1)?)
            }
        })
    }

    fn run(&mut self) -> Result<Id> {
        loop {
            let op = self.r.u8()?;
            match op {
                0x80 => {
                    let proto = self.r.u8()?;
                    if proto > 5 {
                        return Err(bad(format!("protocol {proto}")));
                    }
                }
                0x95 => {
                    self.r.le(8)?;
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Slot::Mark),
                b'0' => {
                    self.stack
                        .pop()
                        .ok_or_else(|| bad("POP on an empty stack"))?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let t = self.top()?;
                    self.stack.push(Slot::Node(t));
                }
                b'N' => self.push(Node::None)?,
                0x88 => self.push(Node::Bool(true))?,
                0x89 => self.push(Node::Bool(false))?,
                b'J' => {
                    let v = self.r.le(4)? as u32 as i32;
                    self.push(Node::Int(v as i128))?
                }
                b'K' => {
                    let v = self.r.u8()?;
                    self.push(Node::Int(v as i128))?
                }
                b'M' => {
                    let v = self.r.le(2)?;
                    self.push(Node::Int(v as i128))?
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.r.u8()? as u64
                    } else {
                        self.r.le(4)?
                    };
                    if n > 16 {
                        return Err(bad(format!("an integer of {n} bytes (more than 128 bits)")));
                    }
                    let b = self.r.take(n)?;
                    let mut v: i128 = 0;
                    for (i, &x) in b.iter().enumerate() {
                        v |= (x as i128) << (8 * i);
                    }
                    if n > 0 && n < 16 && b[n as usize - 1] & 0x80 != 0 {
                        v -= 1i128 << (8 * n);
                    }
                    self.push(Node::Int(v))?
                }
                b'I' | b'L' => {
                    let s = self.r.line()?.trim_end_matches('L');
                    let node = match s {
                        "01" => Node::Bool(true),
                        "00" => Node::Bool(false),
                        _ => Node::Int(s.parse().map_err(|_| bad(format!("integer {s:?}")))?),
                    };
                    self.push(node)?
                }
                b'G' => {
                    let b = self.r.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push(Node::Float(f64::from_be_bytes(a)))?
                }
                b'F' => {
                    let s = self.r.line()?;
                    self.push(Node::Float(
                        s.parse().map_err(|_| bad(format!("float {s:?}")))?,
                    ))?
                }
                0x8c | b'X' | 0x8d => {
                    let n = match op {
                        0x8c => self.r.u8()? as u64,
                        b'X' => self.r.le(4)?,
                        _ => self.r.le(8)?,
                    };
                    let b = self.r.take(n)?;
                    let s =
                        std::str::from_utf8(b).map_err(|_| bad("a string that is not UTF-8"))?;
                    self.push(Node::Str(s.to_string()))?
                }
                b'U' | b'T' => {
                    // Protocol 0-2 byte strings: latin1, as Python 3 decodes them by default.
                    let n = if op == b'U' {
                        self.r.u8()? as u64
                    } else {
                        self.r.le(4)?
                    };
                    let b = self.r.take(n)?;
                    self.push(Node::Str(b.iter().map(|&c| c as char).collect()))?
                }
                b'C' | b'B' | 0x8e | 0x96 => {
                    let n = match op {
                        b'C' => self.r.u8()? as u64,
                        b'B' => self.r.le(4)?,
                        _ => self.r.le(8)?,
                    };
                    let b = self.r.take(n)?.to_vec();
                    self.push(Node::Bytes(b))?
                }
                b')' => self.push(Node::Tuple(vec![]))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Node::Tuple(items))?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Node::Tuple(items))?
                }
                b']' => self.push(Node::List(vec![]))?,
                // EMPTY_SET, ADDITEMS, FROZENSET (protocol 4).
                0x8f => self.push(Node::Set(vec![]))?,
                0x90 => {
                    let items = self.pop_mark()?;
                    let set = self.top()?;
                    self.extend(set, items, false)?
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Node::Set(items))?
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Node::List(items))?
                }
                b'a' => {
                    let v = self.pop()?;
                    let l = self.top()?;
                    self.extend(l, vec![v], false)?
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let l = self.top()?;
                    self.extend(l, items, false)?
                }
                b'}' => self.push(Node::Dict(vec![]))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    if !items.len().is_multiple_of(2) {
                        return Err(bad("DICT with an odd number of objects"));
                    }
                    self.push(Node::Dict(
                        items.chunks(2).map(|kv| (kv[0], kv[1])).collect(),
                    ))?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?;
                    self.extend(d, vec![k, v], true)?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let d = self.top()?;
                    self.extend(d, items, true)?
                }
                b'c' => {
                    let module = self.r.line()?.to_string();
                    let name = self.r.line()?.to_string();
                    self.push_global(&module, &name)?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (&self.nodes[module], &self.nodes[name]) {
                        (Node::Str(m), Node::Str(n)) => {
                            let (m, n) = (m.clone(), n.clone());
                            self.push_global(&m, &n)?
                        }
                        _ => return Err(bad("STACK_GLOBAL of something that is not two strings")),
                    }
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let node = match &self.nodes[f] {
                        Node::Global(g) => self.call(*g, args)?,
                        Node::Class(name) => Node::Object(Object {
                            class: name.clone(),
                            args: self.items_of(args, "the arguments of a call")?,
                            ..Object::default()
                        }),
                        n => return Err(bad(format!("a call of {}", kind_name(n)))),
                    };
                    self.push(node)?
                }
                b'b' => {
                    // BUILD: state set on an object. Allowed on the objects that carry it in
                    // checkpoints (an OrderedDict's `_metadata`, a numpy dtype, a tensor's
                    // Python attributes), where it is ignored.
                    // An allowed class's instance keeps its state.
                    let state = self.pop()?;
                    let obj = self.top()?;
                    let child = self.depth[state] + 1;
                    match &mut self.nodes[obj] {
                        Node::Dict(_) | Node::NumpyDtype(_) | Node::Tensor(_) => {}
                        Node::Object(o) => {
                            if child > MAX_DEPTH {
                                return Err(bad(format!(
                                    "containers nested more than {MAX_DEPTH} deep"
                                )));
                            }
                            o.state = Some(state);
                            self.depth[obj] = self.depth[obj].max(child);
                        }
                        n => return Err(bad(format!("BUILD on {}", kind_name(n)))),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let node = (self.persistent)(&self.nodes, pid)?;
                    self.push(node)?
                }
                b'P' => return Err(bad("a text persistent id (protocol 0)")),
                b'q' | b'r' => {
                    let k = if op == b'q' {
                        self.r.u8()? as u64
                    } else {
                        self.r.le(4)?
                    };
                    let t = self.top()?;
                    self.memo.insert(k, t);
                }
                0x94 => {
                    let t = self.top()?;
                    let k = self.memo.len() as u64;
                    self.memo.insert(k, t);
                }
                b'p' => {
                    let s = self.r.line()?;
                    let k: u64 = s.parse().map_err(|_| bad(format!("memo key {s:?}")))?;
                    let t = self.top()?;
                    self.memo.insert(k, t);
                }
                b'h' | b'j' | b'g' => {
                    let k = match op {
                        b'h' => self.r.u8()? as u64,
                        b'j' => self.r.le(4)?,
                        _ => {
                            let s = self.r.line()?;
                            s.parse().map_err(|_| bad(format!("memo key {s:?}")))?
                        }
                    };
                    let i = *self
                        .memo
                        .get(&k)
                        .ok_or_else(|| bad(format!("memo entry {k} read before it was written")))?;
                    self.stack.push(Slot::Node(i));
                }
                _ => {
                    return Err(bad(format!(
                        "opcode 0x{op:02x} at offset {} is not one this reader executes",
                        self.r.pos - 1
                    )))
                }
            }
            if self.stack.len() > 1 << 20 {
                return Err(bad("more than a million objects on the stack"));
            }
        }
    }

    fn push_global(&mut self, module: &str, name: &str) -> Result<()> {
        let dotted = format!("{module}.{name}");
        let top = module.split('.').next().unwrap_or(module);
        match global(module, name) {
            Some(g) => self.push(Node::Global(g)),
            None if self.extra.contains(&dotted) => self.push(Node::Class(dotted)),
            // No checkpoint needs these: no hint to opt in.
            None if RUNS_CODE.contains(&top) => Err(super::fmt_err(format!(
                "refused: the pickle names the global {dotted}, which runs commands or other \
                 code; no checkpoint needs it, so this file is not one to load (wgnn never runs \
                 anything)"
            ))),
            None => Err(super::fmt_err(format!(
                "refused: the pickle names the global {dotted}, which is not on the allow-list \
                 of tensor data (loading it would run code; wgnn never does). If you trust the \
                 file, read it as inert data with \
                 torch::LoadOptions::default().allow_global(\"{dotted}\") (the checkpoint \
                 example: --allow-global {dotted})"
            ))),
        }
    }
}

/// The value of a numpy scalar from its dtype code and raw bytes.
fn numpy_scalar(code: &str, b: &[u8]) -> Result<Node> {
    let code = code.trim_start_matches(['<', '=', '|']);
    let le = |n: usize| -> Result<u64> {
        if b.len() != n {
            return Err(bad(format!("numpy {code} scalar of {} bytes", b.len())));
        }
        Ok(b.iter().rev().fold(0u64, |a, &x| (a << 8) | x as u64))
    };
    Ok(match code {
        "f8" => Node::Float(f64::from_bits(le(8)?)),
        "f4" => Node::Float(f32::from_bits(le(4)? as u32) as f64),
        "i8" => Node::Int(le(8)? as i64 as i128),
        "i4" => Node::Int(le(4)? as u32 as i32 as i128),
        "u8" => Node::Int(le(8)? as i128),
        "u4" => Node::Int(le(4)? as i128),
        "b1" => Node::Bool(le(1)? != 0),
        _ => return Err(bad(format!("numpy scalar of dtype {code:?}"))),
    })
}

pub(crate) fn kind_name(n: &Node) -> &'static str {
    match n {
        Node::None => "None",
        Node::Bool(_) => "a bool",
        Node::Int(_) => "an int",
        Node::Float(_) => "a float",
        Node::Str(_) => "a str",
        Node::Bytes(_) => "bytes",
        Node::List(_) => "a list",
        Node::Set(_) => "a set",
        Node::Complex(..) => "a complex",
        Node::Tuple(_) => "a tuple",
        Node::Dict(_) => "a dict",
        Node::Global(_) => "a global",
        Node::Storage(..) => "a storage",
        Node::Tensor(_) => "a tensor",
        Node::NumpyDtype(_) => "a numpy dtype",
        Node::Class(_) => "a class",
        Node::Object(_) => "an object",
    }
}

/// Runs one pickle starting at `data[*pos]`; advances `pos` past its STOP.
pub(crate) fn load(
    data: &[u8],
    pos: &mut usize,
    extra: &[String],
    persistent: &mut dyn FnMut(&[Node], Id) -> Result<Node>,
) -> Result<Pickle> {
    let mut m = Machine {
        r: Reader { data, pos: *pos },
        extra,
        nodes: Vec::new(),
        depth: Vec::new(),
        stack: Vec::new(),
        memo: HashMap::new(),
        persistent,
    };
    let root = m.run()?;
    *pos = m.r.pos;
    Ok(Pickle {
        nodes: m.nodes,
        root,
    })
}

/// Reads a persistent id `('storage', StorageClass, key, location, numel[, view])` into a
/// storage node; anything else is refused.
pub(crate) fn storage_pid(nodes: &[Node], pid: Id) -> Result<Node> {
    let items = match &nodes[pid] {
        Node::Tuple(v) => v,
        n => return Err(bad(format!("a persistent id that is {}", kind_name(n)))),
    };
    let get = |i: usize| items.get(i).map(|&x| &nodes[x]);
    match get(0) {
        Some(Node::Str(s)) if s == "storage" => {}
        _ => return Err(bad("a persistent id that is not ('storage', …)")),
    }
    let dtype = match get(1) {
        Some(Node::Global(Global::Storage(d))) => *d,
        _ => return Err(bad("a storage persistent id without a storage class")),
    };
    let key = match get(2) {
        Some(Node::Str(k)) => k.clone(),
        _ => return Err(bad("a storage persistent id without a key")),
    };
    let numel = match get(4) {
        Some(Node::Int(n)) => u64::try_from(*n).map_err(|_| bad("a negative storage size"))?,
        _ => return Err(bad("a storage persistent id without an element count")),
    };
    Ok(Node::Storage(key, dtype, numel))
}
