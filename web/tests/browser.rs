//! wgnn in a real browser: headless Chromium with WebGPU (SwiftShader on a machine without a
//! GPU), through wasm-bindgen's test runner and ChromeDriver. The same numbers as the native
//! tests: the positional table bit for bit against the same reference, the tutorial's model
//! against PyTorch's `reverse_io` within the native bound, state dicts read from bytes as
//! native reads them, bad files refused with the native one-line errors, errors of recorded ops
//! named at the next await, and the page itself end to end.
//!
//!     CHROMEDRIVER=/usr/bin/chromedriver cargo test --target wasm32-unknown-unknown

#![cfg(target_arch = "wasm32")]

#[path = "../../tests/common/pe_reference.rs"]
mod pe_reference;

use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use wgnn::{ops, Device, ModuleExt, StateDict, Tensor};
use wgnn_ports::tutorial6::{Hparams, TransformerPredictor};

wasm_bindgen_test_configure!(run_in_browser);

const REVERSE_CKPT: &[u8] = include_bytes!("../../tests/fixtures/reverse.ckpt");
const REVERSE_ST: &[u8] = include_bytes!("../../tests/fixtures/reverse_trained.safetensors");
const REVERSE_IO: &[u8] = include_bytes!("../../tests/fixtures/reverse_io.safetensors");
/// The native tests' bound on the tutorial model's logits (`tests/transformer.rs`).
const REL: f32 = 2e-5;

async fn gpu() -> Device {
    console_error_panic_hook::set_once();
    match Device::gpu_async().await {
        Ok(d) => d,
        Err(e) => panic!("the browser tests need WebGPU, and found none: {e}"),
    }
}

#[wasm_bindgen_test]
async fn the_positional_table_is_bit_identical_to_the_reference() {
    let gpu = gpu().await;
    let mut failures = Vec::new();
    for d in pe_reference::GPU_DIMS {
        let (reference, _) = pe_reference::reference(5000, d);
        let t = ops::positional_table_async(5000, d, &gpu).await.unwrap();
        let got = t.to_vec_async::<f32>().await.unwrap();
        let differing = got
            .iter()
            .zip(&reference)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        if differing > 0 {
            failures.push((d, differing));
        }
    }
    assert!(
        failures.is_empty(),
        "(d_model, entries differing): {failures:?}"
    );
    // The blocking form says what to use instead, rather than hanging the page.
    let e = ops::positional_table(10, 4, &gpu).unwrap_err().to_string();
    assert!(e.contains("positional_table_async"), "{e}");
}

fn model(bytes: &[u8], device: &Device) -> TransformerPredictor {
    let mut m = TransformerPredictor::new(&Hparams::reverse_task()).unwrap();
    m.load_state_dict(&StateDict::from_bytes(bytes).unwrap(), true)
        .unwrap();
    m.to_device(device).unwrap();
    m.eval();
    m
}

#[wasm_bindgen_test]
async fn the_tutorial_model_matches_pytorch_and_reverses_every_test_sequence() {
    let gpu = gpu().await;
    let io = StateDict::from_bytes(REVERSE_IO).unwrap();
    // On WebGPU, and on the CPU device, which runs single-threaded in a browser.
    for d in [gpu, Device::Cpu] {
        let mut m = model(REVERSE_ST, &d);
        let x = io.get("x").unwrap().to(&d).unwrap();
        let logits = m
            .forward(&ops::one_hot(&x, 10).unwrap(), None, true)
            .unwrap();
        let got = logits.to_vec_async::<f32>().await.unwrap();
        let want = io.get("logits").unwrap().to_vec::<f32>().unwrap();
        let top = want.iter().fold(0f32, |a, v| a.max(v.abs()));
        let err = got
            .iter()
            .zip(&want)
            .fold(0f32, |a, (g, w)| a.max((g - w).abs()))
            / top;
        assert!(err <= REL, "{d}: logits {err:e} > {REL:e} of PyTorch's");
        let labels = io.get("test.labels").unwrap().to_vec::<i64>().unwrap();
        let tx = io.get("test.x").unwrap().to(&d).unwrap();
        let logits = m
            .forward(&ops::one_hot(&tx, 10).unwrap(), None, true)
            .unwrap();
        let preds = ops::argmax(&logits)
            .unwrap()
            .to_vec_async::<i64>()
            .await
            .unwrap();
        assert_eq!(preds, labels, "{d}: the 256 test sequences, reversed");
    }
}

#[wasm_bindgen_test]
async fn state_dicts_read_from_bytes_as_natively() {
    let gpu = gpu().await;
    let st = StateDict::from_bytes(REVERSE_ST).unwrap();
    let ckpt = StateDict::from_bytes(REVERSE_CKPT).unwrap();
    let mut a = st.keys();
    let mut b = ckpt.keys();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    for k in st.keys() {
        let (x, y) = (st.get(k).unwrap(), ckpt.get(k).unwrap());
        assert_eq!(x.shape(), y.shape(), "{k}");
        assert!(x.to_bytes().unwrap() == y.to_bytes().unwrap(), "{k}");
    }
    // Through the GPU and back to bytes: the same tensors.
    let bytes = st.to_device(&gpu).unwrap().to_bytes_async().await.unwrap();
    let back = StateDict::from_bytes(&bytes).unwrap();
    for k in st.keys() {
        assert!(
            back.get(k).unwrap().to_bytes().unwrap() == st.get(k).unwrap().to_bytes().unwrap(),
            "{k}"
        );
    }
}

#[wasm_bindgen_test]
fn bad_and_hostile_files_get_the_native_one_line_errors() {
    // `tests/async_api.rs` asserts the same text natively.
    let junk = b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 12}      ";
    let e = StateDict::from_bytes(junk).unwrap_err().to_string();
    assert_eq!(e, "invalid checkpoint data: invalid header length");
    // Pickles that would run code, and archives built to exhaust memory, are refused with the
    // phrases the native tests expect (`tests/fixtures/hostile/expected.json`).
    let cases: [(&[u8], &str); 5] = [
        (
            include_bytes!("../../tests/fixtures/hostile/global_os_system.pt"),
            "os.system",
        ),
        (
            include_bytes!("../../tests/fixtures/hostile/global_builtins_eval.pt"),
            "builtins.eval",
        ),
        (
            include_bytes!("../../tests/fixtures/hostile/expand_bomb.pt"),
            "expanded view",
        ),
        (
            include_bytes!("../../tests/fixtures/hostile/huge_storage.pt"),
            "declares 1152921504606846976",
        ),
        (
            include_bytes!("../../tests/fixtures/hostile/entry_with_dotdot.pt"),
            "parent-relative",
        ),
    ];
    let expected = include_str!("../../tests/fixtures/hostile/expected.json");
    for (i, (bytes, phrase)) in cases.iter().enumerate() {
        assert!(
            expected.contains(&format!("\"{phrase}\"")),
            "{phrase} is not expected.json's"
        );
        let e = StateDict::from_bytes(bytes).unwrap_err().to_string();
        assert!(!e.contains('\n'), "case {i}: one line: {e}");
        assert!(e.contains(phrase), "case {i}: {e}");
    }
}

#[wasm_bindgen_test]
async fn an_error_of_a_recorded_op_is_reported_at_the_next_await_naming_the_op() {
    let gpu = gpu().await;
    let g = gpu.as_gpu().unwrap();
    let x = Tensor::from_slice(&[1f32, -2., 3.], &[3])
        .unwrap()
        .to(&gpu)
        .unwrap();
    // In a browser an op cannot wait for its error scope: it returns, and the error comes
    // with the next await, naming the op.
    g.__record_faulty_dispatch("faulty_op").unwrap();
    let e = ops::relu(&x)
        .unwrap()
        .to_vec_async::<f32>()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("faulty_op"), "{e}");
    // The device goes on working.
    let y = ops::relu(&x).unwrap().to_vec_async::<f32>().await.unwrap();
    assert_eq!(y, [1., 0., 3.]);
    g.synchronize_async().await.unwrap();
}

fn painted_pixels(id: &str) -> usize {
    let doc = web_sys::window().unwrap().document().unwrap();
    let c: web_sys::HtmlCanvasElement = doc.get_element_by_id(id).unwrap().dyn_into().unwrap();
    let ctx: web_sys::CanvasRenderingContext2d =
        c.get_context("2d").unwrap().unwrap().dyn_into().unwrap();
    let data = ctx
        .get_image_data(0.0, 0.0, c.width() as f64, c.height() as f64)
        .unwrap()
        .data();
    data.chunks(4)
        .filter(|p| p[3] > 0 && (p[0] < 250 || p[1] < 250 || p[2] < 250))
        .count()
}

#[wasm_bindgen_test]
async fn the_page_draws_both_canvases_and_prints_the_accuracy_line() {
    let doc = web_sys::window().unwrap().document().unwrap();
    // The page's own elements (index.html), without its script, added beside the test
    // runner's (which reports through its own elements of the body).
    let html = include_str!("../index.html");
    let start = html.find("<body>").unwrap() + "<body>".len();
    let end = html.find("<script").unwrap();
    let page = doc.create_element("div").unwrap();
    page.set_inner_html(&html[start..end]);
    doc.body().unwrap().append_child(&page).unwrap();
    let mut model = wgnn_web::run(REVERSE_CKPT).await.unwrap();
    let text = |id: &str| doc.get_element_by_id(id).unwrap().text_content().unwrap();
    assert_eq!(
        text("accuracy"),
        "accuracy: 4096/4096 tokens (100.00%), 256/256 sequences fully reversed"
    );
    assert!(
        text("adapter").starts_with("device: "),
        "{}",
        text("adapter")
    );
    assert!(
        text("summary").contains("non-persistent"),
        "{}",
        text("summary")
    );
    let pe = painted_pixels("pe");
    assert!(
        pe > wgnn_web::PE_LEN * wgnn_web::PE_DIM / 2,
        "{pe} painted pixels"
    );
    assert!(
        painted_pixels("attn") >= wgnn_web::SEQ,
        "attention map blank"
    );
    // What a user types is reversed.
    let typed = wgnn_web::parse_digits("0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5").unwrap();
    let out = wgnn_web::reverse_and_draw(&mut model, &typed)
        .await
        .unwrap();
    let mut rev = typed.clone();
    rev.reverse();
    assert_eq!(out, rev);
    assert!(text("reversed").contains("→"));
    assert!(wgnn_web::parse_digits("12a")
        .unwrap_err()
        .contains("not a digit"));
}
