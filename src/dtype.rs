//! Element types: every dtype a PyTorch checkpoint commonly holds.

use std::fmt;

/// The element type of a [`Tensor`](crate::Tensor). Names follow PyTorch (`float32`, `int64`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// `torch.bool`, one byte per element.
    Bool,
    /// `torch.uint8`.
    U8,
    /// `torch.int8`.
    I8,
    /// `torch.int16`.
    I16,
    /// `torch.uint16`.
    U16,
    /// `torch.int32`.
    I32,
    /// `torch.uint32`.
    U32,
    /// `torch.int64`.
    I64,
    /// `torch.uint64`.
    U64,
    /// `torch.float16`.
    F16,
    /// `torch.bfloat16`.
    BF16,
    /// `torch.float32`: what the kernels compute in.
    F32,
    /// `torch.float64`.
    F64,
}

impl DType {
    /// Every dtype, for tests and tools.
    pub const ALL: [DType; 13] = [
        DType::Bool,
        DType::U8,
        DType::I8,
        DType::I16,
        DType::U16,
        DType::I32,
        DType::U32,
        DType::I64,
        DType::U64,
        DType::F16,
        DType::BF16,
        DType::F32,
        DType::F64,
    ];

    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::Bool | DType::U8 | DType::I8 => 1,
            DType::I16 | DType::U16 | DType::F16 | DType::BF16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
        }
    }

    /// PyTorch's name (`torch.float32` → `"float32"`).
    pub const fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::U8 => "uint8",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::U16 => "uint16",
            DType::I32 => "int32",
            DType::U32 => "uint32",
            DType::I64 => "int64",
            DType::U64 => "uint64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }

    /// Whether this is float16 or bfloat16 (stored in 2 bytes, computed in float32).
    pub const fn is_half(self) -> bool {
        matches!(self, DType::F16 | DType::BF16)
    }

    /// Whether this is a floating-point type.
    pub const fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }

    /// Parses PyTorch's name or the safetensors code (`float32`, `f32`, `F32`, `bf16` …).
    pub fn parse(s: &str) -> Option<DType> {
        let s = s.to_ascii_lowercase();
        let s = s.strip_prefix("torch.").unwrap_or(&s);
        DType::ALL.into_iter().find(|d| {
            d.name() == s || d.safetensors_code().eq_ignore_ascii_case(s) || d.short() == s
        })
    }

    fn short(self) -> &'static str {
        match self {
            DType::F16 => "half",
            DType::F32 => "float",
            DType::F64 => "double",
            DType::I64 => "long",
            DType::I32 => "int",
            _ => "",
        }
    }

    /// The code safetensors uses in its header (`F32`, `BF16`, `I64`, `BOOL` …).
    pub const fn safetensors_code(self) -> &'static str {
        match self {
            DType::Bool => "BOOL",
            DType::U8 => "U8",
            DType::I8 => "I8",
            DType::I16 => "I16",
            DType::U16 => "U16",
            DType::I32 => "I32",
            DType::U32 => "U32",
            DType::I64 => "I64",
            DType::U64 => "U64",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::F32 => "F32",
            DType::F64 => "F64",
        }
    }

    pub(crate) fn to_safetensors(self) -> safetensors::Dtype {
        use safetensors::Dtype as S;
        match self {
            DType::Bool => S::BOOL,
            DType::U8 => S::U8,
            DType::I8 => S::I8,
            DType::I16 => S::I16,
            DType::U16 => S::U16,
            DType::I32 => S::I32,
            DType::U32 => S::U32,
            DType::I64 => S::I64,
            DType::U64 => S::U64,
            DType::F16 => S::F16,
            DType::BF16 => S::BF16,
            DType::F32 => S::F32,
            DType::F64 => S::F64,
        }
    }

    pub(crate) fn from_safetensors(d: safetensors::Dtype) -> Option<DType> {
        use safetensors::Dtype as S;
        Some(match d {
            S::BOOL => DType::Bool,
            S::U8 => DType::U8,
            S::I8 => DType::I8,
            S::I16 => DType::I16,
            S::U16 => DType::U16,
            S::I32 => DType::I32,
            S::U32 => DType::U32,
            S::I64 => DType::I64,
            S::U64 => DType::U64,
            S::F16 => DType::F16,
            S::BF16 => DType::BF16,
            S::F32 => DType::F32,
            S::F64 => DType::F64,
            _ => return None,
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
