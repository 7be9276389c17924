//! The positional-encoding table against the reference (DESIGN.md, "Numerical fidelity"), the
//! CPU table, and PyTorch's own tables; the forward pass against PyTorch's; the errors.

mod common;
#[path = "common/pe_reference.rs"]
mod pe_reference;

use pe_reference::{reference, GPU_DIMS};

use wgnn::ops::positional_table;
use wgnn::{DType, Device, Error, ModuleExt, PositionalEncoding, StateDict, Tensor};

struct Diff {
    max: f32,
    differing: usize,
    at: (usize, usize),
}

fn diff(a: &[f32], b: &[f32], d: usize) -> Diff {
    let mut r = Diff {
        max: 0.0,
        differing: 0,
        at: (0, 0),
    };
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let e = (x - y).abs();
        if x.to_bits() != y.to_bits() {
            r.differing += 1;
        }
        if e > r.max || e.is_nan() {
            r.max = e;
            r.at = (i / d, i % d);
        }
    }
    r
}

const DIMS: [usize; 8] = [1, 2, 3, 63, 64, 512, 768, 1024];
/// Widths where the float-float path alone once misrounded (999, 1000, 1500), and a spread.
const TOL: f32 = 1.5e-7;

#[test]
fn gpu_table_matches_the_reference_for_every_width() {
    let gpu = common::gpu();
    let adapter = gpu.as_gpu().unwrap().adapter();
    let mut failures = Vec::new();
    for d in GPU_DIMS {
        let (reference, _) = reference(5000, d);
        let t = positional_table(5000, d, &gpu).unwrap();
        assert!(t.is_on(&gpu));
        assert_eq!(t.shape(), [5000, d]);
        let got = t.to_vec::<f32>().unwrap();
        let r = diff(&got, &reference, d);
        eprintln!(
            "{adapter}: d_model {d:4}: max |gpu - reference| = {:.3e} at (pos {}, col {}); {} of {} entries differ in any bit",
            r.max, r.at.0, r.at.1, r.differing, reference.len()
        );
        if r.differing > 0 || r.max.is_nan() {
            failures.push(format!(
                "d_model {d}: {} entries differ, max error {:.3e} at {:?}",
                r.differing, r.max, r.at
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "GPU table not bit-identical to the reference: {failures:?}"
    );
}

#[test]
fn cpu_table_equals_the_reference_exactly() {
    for d in DIMS {
        let (reference, _) = reference(5000, d);
        let got = positional_table(5000, d, &Device::Cpu)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let r = diff(&got, &reference, d);
        assert_eq!(
            r.differing, 0,
            "d_model {d}: CPU table differs from the reference at {:?}",
            r.at
        );
    }
}

#[test]
fn pytorch_tables_agree_wherever_pytorch_div_term_is_correctly_rounded() {
    let sd = StateDict::load(common::fixture(
        "torch_positional_encoding_subset.safetensors",
    ))
    .unwrap();
    let cpu = Device::Cpu;
    for d in [64usize, 512] {
        let torch_div = sd
            .get(&format!("div_term.d{d}"))
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let (reference, div) = reference(5000, d);
        let bad_div: Vec<usize> = (0..div.len()).filter(|&k| div[k] != torch_div[k]).collect();
        let (rows, torch_pe): (Vec<usize>, Vec<f32>) = if d == 64 {
            (
                (0..5000).collect(),
                sd.get("pe.d64").unwrap().to_vec::<f32>().unwrap(),
            )
        } else {
            let rows = sd.get("pe.d512.rows").unwrap().to_vec::<i64>().unwrap();
            (
                rows.iter().map(|&r| r as usize).collect(),
                sd.get("pe.d512.sampled").unwrap().to_vec::<f32>().unwrap(),
            )
        };
        let ours = positional_table(5000, d, &cpu)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let (mut max_good, mut max_bad, mut differ) = (0f32, 0f32, 0usize);
        for (ri, &pos) in rows.iter().enumerate() {
            for col in 0..d {
                let t = torch_pe[ri * d + col];
                let o = ours[pos * d + col];
                assert_eq!(o, reference[pos * d + col]);
                let e = (t - o).abs();
                if t.to_bits() != o.to_bits() {
                    differ += 1;
                }
                if bad_div.contains(&(col / 2)) {
                    max_bad = max_bad.max(e);
                } else {
                    max_good = max_good.max(e);
                }
            }
        }
        eprintln!(
            "PyTorch d_model {d}: div_term not correctly rounded at {} of {} entries (k = {:?}); \
             max |torch - reference| = {max_good:.3e} where div agrees, {max_bad:.3e} where it does not; \
             {differ} of {} compared entries differ in any bit",
            bad_div.len(), div.len(), bad_div, rows.len() * d
        );
        assert!(
            max_good <= TOL,
            "d_model {d}: PyTorch differs by {max_good:e} where div_term agrees"
        );
    }
}

#[test]
fn forward_matches_pytorch_and_gpu_equals_cpu_bit_for_bit() {
    let gpu = common::gpu();
    let sd = StateDict::load(common::fixture(
        "torch_positional_encoding_subset.safetensors",
    ))
    .unwrap();
    for d in [64usize, 512] {
        let x = sd.get(&format!("forward_x.d{d}")).unwrap();
        let want = sd
            .get(&format!("forward_y.d{d}"))
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let torch_div = sd
            .get(&format!("div_term.d{d}"))
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let (_, div) = reference(1, d);
        let cpu_y = PositionalEncoding::on(d, 5000, &Device::Cpu)
            .unwrap()
            .forward(x)
            .unwrap();
        let pe = PositionalEncoding::on(d, 5000, &gpu).unwrap();
        let gpu_y = pe.forward(&x.to(&gpu).unwrap()).unwrap();
        assert!(gpu_y.is_on(&gpu));
        assert_eq!(gpu_y.shape(), [2, 100, d]);
        let (gpu_y, cpu_y) = (
            gpu_y.to_vec::<f32>().unwrap(),
            cpu_y.to_vec::<f32>().unwrap(),
        );
        assert!(
            gpu_y
                .iter()
                .zip(&cpu_y)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "d_model {d}: GPU and CPU forward differ"
        );
        // Where the tables differ by one ulp of pe, the sum may round to the neighbouring float:
        // one ulp of y (2.4e-7 for |y| in [2, 4)) is the finest agreement the output can show.
        let (mut good, mut bad, mut over_ulp) = (0f32, 0f32, 0usize);
        for (i, (a, b)) in want.iter().zip(&gpu_y).enumerate() {
            let k = (i % d) / 2;
            let e = (a - b).abs();
            if div[k] == torch_div[k] {
                good = good.max(e);
                let ulp = f32::from_bits(a.abs().to_bits() + 1) - a.abs();
                if e > TOL.max(ulp) {
                    over_ulp += 1;
                }
            } else {
                bad = bad.max(e);
            }
        }
        eprintln!(
            "forward d_model {d}: max |wgnn - torch| = {good:.3e} where PyTorch's div_term is correctly rounded, \
             {bad:.3e} in the columns where it is not"
        );
        assert_eq!(
            over_ulp, 0,
            "d_model {d}: forward off PyTorch by more than max(1.5e-7, 1 ulp of y)"
        );
        if d == 64 {
            // With PyTorch's own table, the add itself is PyTorch's to the last bit.
            let torch_pe = sd.get("pe.d64").unwrap().reshape([1, 5000, 64]).unwrap();
            for dev in [Device::Cpu, gpu.clone()] {
                let y =
                    wgnn::ops::add_positional(&x.to(&dev).unwrap(), &torch_pe.to(&dev).unwrap())
                        .unwrap();
                let y = y.to_vec::<f32>().unwrap();
                assert!(
                    y.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "add on {dev} differs from PyTorch's"
                );
            }
        }
    }
}

#[test]
fn moving_the_module_copies_the_table_bit_exact() {
    let gpu = common::gpu();
    let mut pe = PositionalEncoding::on(63, 300, &gpu).unwrap();
    let on_gpu = pe.pe.tensor().to_bytes().unwrap();
    pe.to_device(&Device::Cpu).unwrap();
    assert!(pe.pe.tensor().is_on(&Device::Cpu));
    assert_eq!(pe.pe.tensor().to_bytes().unwrap(), on_gpu);
    assert!(
        pe.state_dict().unwrap().is_empty(),
        "a non-persistent table is never saved"
    );
}

#[test]
fn odd_d_model_ends_with_a_sin_column() {
    let t = positional_table(3, 3, &Device::Cpu)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    // pos 1: sin(1), cos(1), sin(1 * div_1)
    let div1 = ((2f32 * (-(10000f64.ln()) / 3.0) as f32) as f64).exp() as f32;
    assert_eq!(
        t[3..6],
        [
            1f64.sin() as f32,
            1f64.cos() as f32,
            ((div1 as f64).sin()) as f32
        ]
    );
}

#[test]
fn misuse_is_an_error_that_says_what_to_do() {
    let cpu = Device::Cpu;
    let pe = PositionalEncoding::on(8, 10, &cpu).unwrap();
    let e = pe
        .forward(&Tensor::zeros(&[2, 11, 8], DType::F32, &cpu).unwrap())
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("seq_len 11 is longer than max_len 10")
            && e.to_string().contains("max_len >= 11"),
        "{e}"
    );
    let e = pe
        .forward(&Tensor::zeros(&[2, 5, 6], DType::F32, &cpu).unwrap())
        .unwrap_err();
    assert!(
        e.to_string().contains("d_model 6") && e.to_string().contains("d_model 8"),
        "{e}"
    );
    let e = pe
        .forward(&Tensor::zeros(&[5, 8], DType::F32, &cpu).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("rank 2"), "{e}");
    let e = pe
        .forward(&Tensor::zeros(&[1, 5, 8], DType::F64, &cpu).unwrap())
        .unwrap_err();
    assert!(
        matches!(e, Error::Dtype { .. }) && e.to_string().contains("float64"),
        "{e}"
    );
    // float16 input and the float32 table: PyTorch's promotion, a float32 sum.
    let y = pe
        .forward(&Tensor::zeros(&[1, 5, 8], DType::F16, &cpu).unwrap())
        .unwrap();
    assert_eq!(y.dtype(), DType::F32);
    assert!(PositionalEncoding::on(0, 10, &cpu)
        .unwrap_err()
        .to_string()
        .contains("d_model must be at least 1"));
    assert!(PositionalEncoding::on(8, 0, &cpu)
        .unwrap_err()
        .to_string()
        .contains("max_len must be at least 1"));
    let gpu = common::gpu();
    let x = Tensor::zeros(&[1, 5, 8], DType::F32, &gpu).unwrap();
    let e = pe.forward(&x).unwrap_err();
    assert!(matches!(e, Error::DeviceMismatch { .. }), "{e}");
}
