//! The codes that select what a multi-purpose kernel computes (`op` fields, flag bits), written
//! once here. Rust uses the enums; every shader gets them as WGSL constants
//! (`const UNARY_EXP: u32 = 5u;`) appended to its source by the kernel table, so a shader names
//! `UNARY_EXP` and never a number that could drift from the Rust side.

macro_rules! codes {
    ($( $(#[$doc:meta])* $name:ident $prefix:literal {
        $( $(#[$vdoc:meta])* $v:ident = $n:literal ),* $(,)?
    } )*) => {
        $(
            $(#[$doc])*
            #[derive(Clone, Copy, Debug, PartialEq, Eq)]
            #[repr(u32)]
            pub(crate) enum $name { $( $(#[$vdoc])* $v = $n ),* }

            impl $name {
                /// The value the shader compares with.
                pub(crate) const fn code(self) -> u32 {
                    self as u32
                }
            }
        )*

        /// Every code as a WGSL constant (`PREFIX_VARIANT`), one per line.
        pub(crate) fn wgsl_prelude() -> String {
            let mut s = String::from("// Generated from src/gpu/codes.rs.\n");
            s.push_str(SPECIAL_FLOATS);
            $( $(
                s.push_str(&format!(
                    "const {}_{}: u32 = {}u;\n",
                    $prefix,
                    upper_snake(stringify!($v)),
                    $n
                ));
            )* )*
            s
        }

        /// (constant name, value) of every code, for the tests.
        #[cfg(test)]
        pub(crate) fn all() -> Vec<(String, u32)> {
            let mut v = Vec::new();
            $( $( v.push((format!("{}_{}", $prefix, upper_snake(stringify!($v))), $n)); )* )*
            v
        }
    };
}

/// Special float values for every shader, made from their bits at run time: naga folds a
/// constant `bitcast<f32>(0x7f800000u)` into an `inf` literal when it writes WGSL for WebGPU,
/// and Chromium's compiler refuses non-finite (and some extreme) literals. OR-ing with a
/// private variable that stays 0 keeps them out of constant folding.
///
/// `tree_sum64`: the row kernels' sum for rows run one invocation per row: slot t holds the
/// strided partial sum of elements t, t + 64, … (what invocation t of the workgroup path
/// sums), combined by the pairwise tree that path runs in workgroup memory, so both paths (and
/// the CPU's `sum64`) add in one order.
const SPECIAL_FLOATS: &str = "var<private> wgnn_zero: u32 = 0u;
fn f32_bits(b: u32) -> f32 { return bitcast<f32>(b | wgnn_zero); }
fn tree_sum64(v: ptr<function, array<f32, 64>>) -> f32 {
    for (var s = 32u; s > 0u; s >>= 1u) {
        for (var t = 0u; t < s; t++) {
            (*v)[t] = (*v)[t] + (*v)[t + s];
        }
    }
    return (*v)[0];
}
";

/// `ReluBackward` → `RELU_BACKWARD`.
fn upper_snake(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

codes! {
    /// What `unary.wgsl` computes per element.
    UnaryOp "UNARY" {
        Relu = 0,
        Scale = 1,
        Dropout = 2,
        Uniform = 3,
        Neg = 4,
        Exp = 5,
        Log = 6,
        Sqrt = 7,
        Rsqrt = 8,
        Pow = 9,
        Tanh = 10,
        Sigmoid = 11,
        Gelu = 12,
        GeluTanh = 13,
        Silu = 14,
        Clamp = 15,
        /// gelu's derivative (exact form).
        GeluGrad = 16,
        /// gelu's derivative (tanh form).
        GeluTanhGrad = 17,
        /// silu's derivative.
        SiluGrad = 18,
        /// 1 where lo ≤ x ≤ hi, else 0 (clamp's derivative).
        ClampGrad = 19,
        /// `x > 0 ? x : alpha·expm1(x)`.
        Elu = 20,
        /// elu's derivative: `x > 0 ? 1 : alpha·exp(x)` (1 at 0 for alpha 1, as PyTorch).
        EluGrad = 21,
        /// `x > 0 ? x : x·alpha`.
        LeakyRelu = 22,
        /// leaky_relu's derivative: `x > 0 ? 1 : alpha` (alpha at 0, as PyTorch).
        LeakyReluGrad = 23,
        /// `x·beta > threshold ? x : log1p(exp(x·beta)) / beta` (alpha = beta, beta = threshold).
        Softplus = 24,
        /// softplus's derivative: `x·beta > threshold ? 1 : e / (e + 1)`, `e = exp(x·beta)`.
        SoftplusGrad = 25,
        /// 1 where lo < x < hi strictly, else 0 (hardtanh's derivative, as PyTorch's).
        HardtanhGrad = 26,
    }
    /// What `binary.wgsl` computes per element.
    BinaryOp "BINARY" {
        Mul = 0,
        ReluBackward = 1,
        Add = 2,
        Clip = 3,
        Sub = 4,
        Div = 5,
        /// 1 where a == b, else 0.
        Equal = 6,
        /// `relu(a + b)` (a residual sum and its activation, one pass).
        AddRelu = 7,
    }
    /// What `row_sum.wgsl` sums.
    RowSumOp "ROW_SUM" {
        Sum = 0,
        Squares = 1,
        /// The row's maximum (NaN if any element is).
        Max = 2,
        /// A flag: x is stored [width, rows], each reduced "row" one of its columns.
        Columns = 256,
    }
    /// Which direction `cross_entropy_rows.wgsl` computes.
    CrossEntropyOp "CROSS_ENTROPY" {
        Loss = 0,
        Grad = 1,
        /// A flag: one invocation per row (`gpu::tuning::short_rows`).
        ShortRows = 256,
    }
    /// Which update `adam.wgsl` applies.
    Update "UPDATE" {
        /// `m + (1 - β1)·(g - m)`.
        AdamExpAvg = 0,
        /// `v·β2 + ((1 - β2)·g)·g`.
        AdamExpAvgSq = 1,
        /// `p + (-step)·(m / (sqrt(v) / bc2_sqrt + eps))`.
        AdamParam = 2,
        /// `b·μ + g`.
        SgdBuffer = 3,
        /// `p + (-lr)·b`.
        SgdParamMomentum = 4,
        /// `p + (-lr)·g`.
        SgdParam = 5,
    }
    /// Which way `strided_copy.wgsl` copies.
    CopyMode "COPY" {
        /// `y[i] = x[base + Σ coord · stride]` (a view made contiguous).
        Gather = 0,
        /// `y[base + Σ coord · stride] = x[i]` (an input placed into its slice of `cat`).
        Scatter = 1,
        /// The gather of 2-byte elements: one invocation per output word (two elements), so
        /// no two invocations write one word.
        Gather16 = 2,
    }
    /// The float storage formats `convert.wgsl` converts between.
    Format "FMT" {
        F32 = 0,
        F16 = 1,
        Bf16 = 2,
    }
    /// Bits of `layer_norm.wgsl`'s `affine`.
    LayerNormFlag "LAYER_NORM" {
        Weight = 1,
        Bias = 2,
        Backward = 4,
        /// x is x + residual (binding 2), added once per read (`add_layer_norm`).
        Residual = 8,
    }
    /// What `pool2d.wgsl` computes.
    PoolOp "POOL" {
        /// max over each window (NaN wins), the output.
        Max = 0,
        /// the flat index (within the plane) of each window's maximum, as int64 words.
        MaxIndex = 1,
        /// max_pool2d's gradient: per input element, the sum of g over the windows whose
        /// maximum it is.
        MaxBackward = 2,
        /// the mean of each window.
        Avg = 3,
        /// avg_pool2d's gradient.
        AvgBackward = 4,
        /// adaptive_avg_pool2d: windows [⌊o·I/O⌋, ⌈(o+1)·I/O⌉).
        Adaptive = 5,
        /// adaptive_avg_pool2d's gradient.
        AdaptiveBackward = 6,
    }
    /// Bits of `batch_norm_backward.wgsl`'s `affine`.
    BatchNormFlag "BATCH_NORM" {
        Weight = 1,
        BatchStats = 2,
        /// `batch_norm.wgsl`: a ReLU on the result (`batch_norm_relu`).
        Relu = 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The constants parse as WGSL and hold the Rust values.
    #[test]
    fn the_wgsl_constants_are_the_rust_codes() {
        let module = naga::front::wgsl::parse_str(&wgsl_prelude()).unwrap();
        for (name, value) in all() {
            let (_, c) = module
                .constants
                .iter()
                .find(|(_, c)| c.name.as_deref() == Some(name.as_str()))
                .unwrap_or_else(|| panic!("{name} missing"));
            match module.global_expressions[c.init] {
                naga::Expression::Literal(naga::Literal::U32(v)) => assert_eq!(v, value, "{name}"),
                ref e => panic!("{name}: {e:?}"),
            }
        }
        assert_eq!(UnaryOp::GeluTanh.code(), 13);
        assert!(wgsl_prelude().contains("const UNARY_GELU_TANH: u32 = 13u;"));
    }

    /// No shader compares an `op` or flag with a bare number: every code comes from here.
    #[test]
    fn shaders_name_their_codes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
        let files = std::fs::read_dir(&dir)
            .unwrap()
            .chain(std::fs::read_dir(dir.join("include")).unwrap())
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file());
        for path in files {
            let src = std::fs::read_to_string(&path).unwrap();
            // `case N` is a code only in a switch on `p.op` (positional_encoding's quadrant
            // switch is arithmetic).
            let switches_on_op = src.contains("switch p.op");
            for (i, line) in src.lines().enumerate() {
                let l = line.split("//").next().unwrap_or("");
                let bare = switches_on_op
                    && l.trim_start().starts_with("case")
                    && l.chars()
                        .nth(l.find("case ").unwrap_or(0) + 5)
                        .is_some_and(|c| c.is_ascii_digit());
                let bare_op = ["p.op == ", "p.affine & "].iter().any(|pat| {
                    l.find(pat)
                        .and_then(|at| l[at + pat.len()..].chars().next())
                        .is_some_and(|c| c.is_ascii_digit())
                });
                assert!(
                    !bare && !bare_op,
                    "{}:{}: a bare code: {line}",
                    path.display(),
                    i + 1
                );
            }
        }
    }
}
