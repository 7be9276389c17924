//! The tutorial's Transformer against PyTorch 2.15's outputs (`tests/fixtures/reverse_io`,
//! `mh_model` / `mh_io`), on the CPU and on the GPU: every intermediate of the forward pass, the
//! attention maps (both the tutorial's `get_attention_maps` and the masked forward's), the
//! predictions, and the reverse task's 256-sequence test set.

mod common;

use common::{fixture, gpu};
use wgnn::{ops, Device, Forward, ModuleExt, StateDict, Tensor};
use wgnn_ports::tutorial6::{Hparams, TransformerPredictor};

/// Logits and every intermediate: within this fraction of the reference's largest magnitude.
const REL: f32 = 2e-5;
/// Attention maps (probabilities): absolute.
const ATTN: f32 = 1e-5;

fn devices() -> Vec<Device> {
    vec![Device::Cpu, gpu()]
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

/// max |got - want|, asserted within `bound` (relative to max |want| when `relative`).
fn check(what: &str, got: &Tensor, want: &Tensor, bound: f32, relative: bool) -> f32 {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let (g, w) = (f32s(got), f32s(want));
    let scale = if relative {
        w.iter().fold(0f32, |m, v| m.max(v.abs()))
    } else {
        1.0
    };
    let err = g
        .iter()
        .zip(&w)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale;
    assert!(err <= bound, "{what}: error {err:e} > {bound:e}");
    err
}

fn model(file: &str, hp: &Hparams, device: &Device) -> TransformerPredictor {
    let mut m = TransformerPredictor::new(hp).unwrap();
    let sd = StateDict::load(fixture(file)).unwrap();
    m.load_state_dict(&sd, true).unwrap();
    m.to_device(device).unwrap();
    m.eval();
    m
}

fn mh_hparams() -> Hparams {
    Hparams {
        model_dim: 64,
        num_heads: 4,
        num_layers: 2,
        ..Hparams::reverse_task()
    }
}

/// Runs the tutorial's `trace_forward` on `model` and compares every entry under `prefix`.
/// Returns the largest relative error of the traces and the largest attention error.
fn trace(
    model: &mut TransformerPredictor,
    io: &StateDict,
    prefix: &str,
    input: &Tensor,
    mask: Option<&Tensor>,
    add_pe: bool,
) -> (f32, f32) {
    let d = input.device();
    let want = |k: &str| {
        io.get(&format!("{prefix}{k}"))
            .unwrap_or_else(|| panic!("{prefix}{k}"))
            .clone()
    };
    let mask = mask.map(|m| m.to(&d).unwrap());
    let (mut rel, mut attn) = (0f32, 0f32);
    let mut h = model.input_net.forward(input).unwrap();
    rel = rel.max(check(
        &format!("{prefix}input_net"),
        &h,
        &want("input_net"),
        REL,
        true,
    ));
    if add_pe {
        h = model.positional_encoding.forward(&h).unwrap();
    }
    rel = rel.max(check(
        &format!("{prefix}embed"),
        &h,
        &want("embed"),
        REL,
        true,
    ));
    let layers = model.transformer.layers.len();
    for i in 0..layers {
        let layer = model.transformer.layers.get_mut(i).unwrap();
        if mask.is_some() {
            let (_, a) = layer.self_attn.forward(&h, mask.as_ref(), true).unwrap();
            let a = a.unwrap();
            attn = attn.max(check(
                &format!("{prefix}attn_forward.{i}"),
                &a,
                &want(&format!("attn_forward.{i}")),
                ATTN,
                false,
            ));
        }
        h = layer.forward(&h, mask.as_ref()).unwrap();
        rel = rel.max(check(
            &format!("{prefix}layer.{i}"),
            &h,
            &want(&format!("layer.{i}")),
            REL,
            true,
        ));
    }
    let logits = model.output_net.forward(&h).unwrap();
    rel = rel.max(check(
        &format!("{prefix}logits"),
        &logits,
        &want("logits"),
        REL,
        true,
    ));
    // The whole forward gives the same bits as the pieces.
    let whole = model.forward(input, mask.as_ref(), add_pe).unwrap();
    assert_eq!(
        f32s(&whole),
        f32s(&logits),
        "{prefix}: forward equals its pieces"
    );
    let preds = ops::argmax(&logits).unwrap();
    assert_eq!(
        preds.to_vec::<i64>().unwrap(),
        want("preds").to_vec::<i64>().unwrap(),
        "{prefix}preds"
    );
    // Under no_grad the attention runs fused (one kernel on the GPU): PyTorch's logits and
    // predictions all the same.
    let fused = wgnn::autograd::no_grad(|| model.forward(input, mask.as_ref(), add_pe)).unwrap();
    rel = rel.max(check(
        &format!("{prefix}logits (no_grad, fused attention)"),
        &fused,
        &want("logits"),
        REL,
        true,
    ));
    assert_eq!(
        ops::argmax(&fused).unwrap().to_vec::<i64>().unwrap(),
        want("preds").to_vec::<i64>().unwrap(),
        "{prefix}preds (no_grad)"
    );
    let maps = model
        .get_attention_maps(input, mask.as_ref(), add_pe)
        .unwrap();
    assert_eq!(maps.len(), layers);
    for (i, a) in maps.iter().enumerate() {
        attn = attn.max(check(
            &format!("{prefix}attn.{i}"),
            a,
            &want(&format!("attn.{i}")),
            ATTN,
            false,
        ));
    }
    (rel, attn)
}

#[test]
fn reverse_model_matches_pytorch_on_cpu_and_gpu() {
    let io = StateDict::load(fixture("reverse_io.safetensors")).unwrap();
    let hp = Hparams::reverse_task();
    for d in devices() {
        let mut m = model("reverse_trained.safetensors", &hp, &d);
        let x = io.get("x").unwrap().to(&d).unwrap();
        let input = ops::one_hot(&x, hp.num_classes).unwrap();
        assert_eq!(f32s(&input), f32s(io.get("input").unwrap()), "one_hot");
        let plain = trace(&mut m, &io, "", &input, None, true);
        let causal_mask = io.get("causal.mask").unwrap().clone();
        let causal = trace(&mut m, &io, "causal.", &input, Some(&causal_mask), true);
        eprintln!(
            "reverse on {d}: traces rel {:.2e} / {:.2e} (causal), attention {:.2e} / {:.2e}",
            plain.0, causal.0, plain.1, causal.1
        );
    }
}

#[test]
fn reverse_test_set_is_reversed_completely() {
    let io = StateDict::load(fixture("reverse_io.safetensors")).unwrap();
    let hp = Hparams::reverse_task();
    let labels = io.get("test.labels").unwrap().to_vec::<i64>().unwrap();
    for d in devices() {
        let mut m = model("reverse_trained.safetensors", &hp, &d);
        let x = io.get("test.x").unwrap().to(&d).unwrap();
        let logits = m
            .forward(&ops::one_hot(&x, 10).unwrap(), None, true)
            .unwrap();
        let preds = ops::argmax(&logits).unwrap().to_vec::<i64>().unwrap();
        let correct = preds.iter().zip(&labels).filter(|(a, b)| a == b).count();
        assert_eq!(
            correct,
            labels.len(),
            "{d}: {correct}/{} tokens",
            labels.len()
        );
        assert_eq!(
            preds,
            io.get("test.logits_argmax")
                .unwrap()
                .to_vec::<i64>()
                .unwrap()
        );
    }
}

#[test]
fn multi_head_model_matches_pytorch_in_every_case() {
    let io = StateDict::load(fixture("mh_io.safetensors")).unwrap();
    let hp = mh_hparams();
    for d in devices() {
        let mut m = model("mh_model.safetensors", &hp, &d);
        let s16 = ops::one_hot(&io.get("s16.x").unwrap().to(&d).unwrap(), 10).unwrap();
        assert_eq!(f32s(&s16), f32s(io.get("s16.input").unwrap()));
        let s13 = io.get("s13.input").unwrap().to(&d).unwrap();
        let s1 = io.get("s1.input").unwrap().to(&d).unwrap();
        let causal = io.get("s13_causal.mask").unwrap().clone();
        let pad = io.get("s13_pad.mask").unwrap().clone();
        let cases: [(&str, &Tensor, Option<&Tensor>, bool); 6] = [
            ("s16.", &s16, None, true),
            ("s16_nope.", &s16, None, false),
            ("s13.", &s13, None, true),
            ("s13_causal.", &s13, Some(&causal), true),
            ("s13_pad.", &s13, Some(&pad), true),
            ("s1.", &s1, None, true),
        ];
        for (prefix, input, mask, pe) in cases {
            let (rel, attn) = trace(&mut m, &io, prefix, input, mask, pe);
            eprintln!("mh {prefix} on {d}: traces rel {rel:.2e}, attention {attn:.2e}");
        }
        // wgnn's table is correctly rounded; PyTorch's rounds `position * div_term` to float32
        // before `sin`, so its entries are off by up to a few units in the last place.
        let pe = ops::narrow(m.positional_encoding.pe.tensor(), 1, 0, 16).unwrap();
        let e = check("pe16", &pe, io.get("pe16").unwrap(), 1e-6, false);
        eprintln!("pe16 on {d}: max |wgnn - torch| {e:.2e}");
    }
}

#[test]
fn a_model_moved_to_the_gpu_predicts_what_it_predicted_on_the_cpu() {
    let io = StateDict::load(fixture("mh_io.safetensors")).unwrap();
    let mut m = model("mh_model.safetensors", &mh_hparams(), &Device::Cpu);
    let x = io.get("s13.input").unwrap().clone();
    let on_cpu = m.forward(&x, None, true).unwrap();
    let g = gpu();
    m.to_device(&g).unwrap();
    let on_gpu = m.forward(&x.to(&g).unwrap(), None, true).unwrap();
    check("cpu vs gpu logits", &on_gpu, &on_cpu, REL, true);
    assert_eq!(
        ops::argmax(&on_gpu).unwrap().to_vec::<i64>().unwrap(),
        ops::argmax(&on_cpu).unwrap().to_vec::<i64>().unwrap()
    );
}

#[test]
fn the_state_dict_keys_are_pytorchs() {
    let m = TransformerPredictor::new(&mh_hparams()).unwrap();
    let sd = StateDict::load(fixture("mh_model.safetensors")).unwrap();
    // safetensors stores keys sorted; the set is PyTorch's.
    let mut ours = m
        .state_dict()
        .unwrap()
        .keys()
        .iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>();
    ours.sort();
    assert_eq!(ours, sd.keys());
    // The table is a buffer that is not saved.
    assert!(m
        .named_buffers()
        .iter()
        .any(|(n, b)| n == "positional_encoding.pe" && !b.persistent()));
}

#[test]
fn bad_inputs_get_errors_not_panics() {
    let hp = Hparams::reverse_task();
    let mut m = TransformerPredictor::new(&hp).unwrap();
    m.eval();
    // Wrong width.
    let x = Tensor::zeros(&[2, 5, 7], wgnn::DType::F32, &Device::Cpu).unwrap();
    let e = m.forward(&x, None, true).unwrap_err().to_string();
    assert!(e.contains("[2, 5, 7]") && e.contains("10"), "{e}");
    // A mask that does not broadcast to [B, H, S, S].
    let x = Tensor::zeros(&[2, 5, 10], wgnn::DType::F32, &Device::Cpu).unwrap();
    let mask = Tensor::zeros(&[4, 4], wgnn::DType::F32, &Device::Cpu).unwrap();
    let e = m.forward(&x, Some(&mask), true).unwrap_err().to_string();
    assert!(e.contains("mask") && e.contains("[1, 1, 4, 4]"), "{e}");
    // num_heads that does not divide the width.
    let bad = Hparams {
        num_heads: 3,
        ..hp.clone()
    };
    let e = TransformerPredictor::new(&bad).err().unwrap().to_string();
    assert!(e.contains("32") && e.contains('3'), "{e}");
    // Wrong dtype.
    let xi = Tensor::from_slice(&[1i64; 10], &[1, 1, 10]).unwrap();
    let e = m.forward(&xi, None, true).unwrap_err().to_string();
    assert!(e.contains("int64"), "{e}");
    // Input on the CPU, model on the GPU.
    let g = gpu();
    m.to_device(&g).unwrap();
    let e = m.forward(&x, None, true).unwrap_err().to_string();
    assert!(e.to_lowercase().contains("device"), "{e}");
}

/// Issue 20: the tutorial's attention splits the heads with views (reshape, permute, chunk)
/// and merges them with a product written in merged order: its forward records no copy
/// kernel, with 4 heads over 2 layers, and with a mask the only copies are the mask's.
#[test]
fn the_forward_records_no_copy_kernel_for_heads() {
    let g = gpu();
    let gd = g.as_gpu().unwrap();
    let mut m = model("mh_model.safetensors", &mh_hparams(), &g);
    let x = Tensor::from_slice(&common::randn(3 * 16 * 10, 4), &[3, 16, 10])
        .unwrap()
        .to(&g)
        .unwrap();
    let copies = || gd.dispatch_count(Some("strided_copy"));
    // Every matrix-product kernel (the tiled one and the direct ones, chosen by shape).
    let matmuls = || {
        ["matmul", "matmul_direct", "matmul_k4", "matmul_n4"]
            .iter()
            .map(|k| gd.dispatch_count(Some(k)))
            .sum::<u64>()
    };
    let (c0, m0) = (copies(), matmuls());
    let y = m.forward(&x, None, true).unwrap();
    assert_eq!(copies() - c0, 0, "copy kernels in the forward");
    // Per layer: qkv, q·kᵀ, attention·v, out, two feed-forward linears; the input net's
    // linear and the output net's two.
    assert_eq!(matmuls() - m0, 2 * 6 + 1 + 2);
    // The same numbers as the same ops through explicit copies (the CPU path, whose matrix
    // products read the views in place too, agrees within the model bound).
    let mut cpu = model("mh_model.safetensors", &mh_hparams(), &Device::Cpu);
    let want = cpu
        .forward(&x.to(&Device::Cpu).unwrap(), None, true)
        .unwrap();
    check("forward without head copies", &y, &want, 2e-5, true);
}
