//! wgnn in the browser: a page that draws the positional-encoding table computed on WebGPU, runs
//! the tutorial's trained reverse-task model on WebGPU, reverses what the user types and draws
//! its attention (see `index.html`, and README.md "In the browser" for building and serving).
//!
//! Everything here is wgnn's async API, the only one a browser has: `Device::gpu_async`,
//! `positional_table_async`, `to_vec_async`. The page's steps are public so the browser tests
//! (`tests/browser.rs`) run the same code on a page they build themselves.

#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::{Clamped, JsCast};
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{CanvasRenderingContext2d, Document, HtmlCanvasElement, HtmlInputElement, ImageData};
use wgnn::{ops, Device, ModuleExt, StateDict, Tensor};
use wgnn_ports::tutorial6::{Hparams, TransformerPredictor};

/// The table the page draws: positions down, dimensions across (the tutorial's figure).
pub const PE_LEN: usize = 100;
/// Its width.
pub const PE_DIM: usize = 128;
/// The reverse task's sequence length.
pub const SEQ: usize = 16;
/// Sequences in the random batch whose accuracy the page prints.
pub const BATCH: usize = 256;

/// Errors as the page shows them: one line.
pub type PageResult<T> = Result<T, String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string().replace('\n', " ")
}

fn document() -> PageResult<Document> {
    web_sys::window()
        .and_then(|w| w.document())
        .ok_or_else(|| "no document".to_string())
}

/// Sets the text of the element with id `id`.
pub fn set_text(id: &str, text: &str) -> PageResult<()> {
    document()?
        .get_element_by_id(id)
        .ok_or_else(|| format!("the page has no #{id}"))?
        .set_text_content(Some(text));
    Ok(())
}

fn canvas(id: &str) -> PageResult<(HtmlCanvasElement, CanvasRenderingContext2d)> {
    let c: HtmlCanvasElement = document()?
        .get_element_by_id(id)
        .ok_or_else(|| format!("the page has no #{id}"))?
        .dyn_into()
        .map_err(|_| format!("#{id} is not a canvas"))?;
    let ctx: CanvasRenderingContext2d = c
        .get_context("2d")
        .map_err(|_| "no 2d context".to_string())?
        .ok_or_else(|| "no 2d context".to_string())?
        .dyn_into()
        .map_err(|_| "no 2d context".to_string())?;
    Ok((c, ctx))
}

/// Whether the browser exposes WebGPU (`navigator.gpu`).
pub fn has_webgpu() -> bool {
    web_sys::window().is_some_and(|w| {
        js_sys::Reflect::get(&w.navigator(), &JsValue::from_str("gpu"))
            .is_ok_and(|g| !g.is_undefined() && !g.is_null())
    })
}

/// A diverging colour for a value in [-1, 1]: blue through white to red.
fn colour(v: f32) -> [u8; 3] {
    let t = v.clamp(-1.0, 1.0);
    let a = (255.0 * (1.0 - t.abs())) as u8;
    if t >= 0.0 {
        [255, a, a]
    } else {
        [a, a, 255]
    }
}

/// Draws `values` (`rows × cols`, row-major) on canvas `id`, one pixel a value (the canvas is
/// scaled up by CSS), through `paint`.
fn draw_grid(
    id: &str,
    values: &[f32],
    rows: usize,
    cols: usize,
    paint: impl Fn(f32) -> [u8; 3],
) -> PageResult<()> {
    let (c, ctx) = canvas(id)?;
    c.set_width(cols as u32);
    c.set_height(rows as u32);
    let mut rgba = Vec::with_capacity(rows * cols * 4);
    for &v in values {
        let [r, g, b] = paint(v);
        rgba.extend_from_slice(&[r, g, b, 255]);
    }
    let img = ImageData::new_with_u8_clamped_array_and_sh(Clamped(&rgba), cols as u32, rows as u32)
        .map_err(|_| "could not make the image".to_string())?;
    ctx.put_image_data(&img, 0.0, 0.0)
        .map_err(|_| "could not draw the image".to_string())
}

/// The positional table computed on `gpu`, drawn on `#pe`; returns it.
pub async fn draw_positional_table(gpu: &Device) -> PageResult<Vec<f32>> {
    let table = ops::positional_table_async(PE_LEN, PE_DIM, gpu)
        .await
        .map_err(err)?;
    let v = table.to_vec_async::<f32>().await.map_err(err)?;
    draw_grid("pe", &v, PE_LEN, PE_DIM, colour)?;
    Ok(v)
}

/// The tutorial's reverse-task model from checkpoint bytes (a `.ckpt`, `.pt` or
/// `.safetensors`), built on the CPU and moved to `gpu` in one upload, in eval mode.
pub fn load_model(bytes: &[u8], gpu: &Device) -> PageResult<TransformerPredictor> {
    let sd = StateDict::from_bytes(bytes).map_err(err)?;
    let mut model = TransformerPredictor::new(&Hparams::reverse_task()).map_err(err)?;
    model.load_state_dict(&sd, true).map_err(err)?;
    model.to_device(gpu).map_err(err)?;
    model.eval();
    Ok(model)
}

/// The device the model's parameters are on.
fn device_of(model: &TransformerPredictor) -> Device {
    model
        .parameters()
        .first()
        .map_or(Device::Cpu, |p| p.tensor().device())
}

/// The model's predictions for `x` (`[n, SEQ]` tokens) on its device.
pub async fn predict(model: &mut TransformerPredictor, x: &[i64]) -> PageResult<Vec<i64>> {
    let device = device_of(model);
    let n = x.len() / SEQ;
    let xt = Tensor::from_slice(x, &[n, SEQ])
        .and_then(|t| t.to(&device))
        .map_err(err)?;
    let logits = wgnn::autograd::no_grad(|| model.forward(&ops::one_hot(&xt, 10)?, None, true))
        .map_err(err)?;
    ops::argmax(&logits)
        .map_err(err)?
        .to_vec_async::<i64>()
        .await
        .map_err(err)
}

/// Deterministic sequences of `SEQ` digits (a 64-bit LCG, so the page shows the same batch).
pub fn random_batch(n: usize, seed: u64) -> Vec<i64> {
    let mut s = seed;
    (0..n * SEQ)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % 10) as i64
        })
        .collect()
}

/// The native `reverse` example's accuracy line for predictions `preds` of inputs `x`.
pub fn accuracy_line(x: &[i64], preds: &[i64]) -> String {
    wgnn_ports::reversal_accuracy(x, preds, SEQ)
}

/// Reverses one sequence, shows it, and draws its first layer's attention on `#attn`.
pub async fn reverse_and_draw(
    model: &mut TransformerPredictor,
    tokens: &[i64],
) -> PageResult<Vec<i64>> {
    let preds = predict(model, tokens).await?;
    let show = |v: &[i64]| {
        v.iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    set_text(
        "reversed",
        &format!("{}  →  {}", show(tokens), show(&preds)),
    )?;
    let device = device_of(model);
    let xt = Tensor::from_slice(tokens, &[1, SEQ])
        .and_then(|t| t.to(&device))
        .map_err(err)?;
    let maps = model
        .get_attention_maps(&ops::one_hot(&xt, 10).map_err(err)?, None, true)
        .map_err(err)?;
    let first = maps.first().ok_or("the model has no layer")?;
    let m = first.to_vec_async::<f32>().await.map_err(err)?;
    // Head 0: queries down, keys across; white (0) to dark blue (1).
    draw_grid("attn", &m[..SEQ * SEQ], SEQ, SEQ, |v| {
        let a = (255.0 * (1.0 - v.clamp(0.0, 1.0))) as u8;
        [a, a, 255 - (255 - a) / 3]
    })?;
    Ok(preds)
}

/// Parses what the user typed: exactly `SEQ` digits, spaces allowed.
pub fn parse_digits(s: &str) -> PageResult<Vec<i64>> {
    let d: Vec<i64> = s
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| {
            c.to_digit(10)
                .map(i64::from)
                .ok_or(format!("{c:?} is not a digit"))
        })
        .collect::<PageResult<_>>()?;
    if d.len() != SEQ {
        return Err(format!("type {SEQ} digits (got {})", d.len()));
    }
    Ok(d)
}

/// Fetches `url` as bytes.
pub async fn fetch_bytes(url: &str) -> PageResult<Vec<u8>> {
    let window = web_sys::window().ok_or("no window")?;
    let resp: web_sys::Response = JsFuture::from(window.fetch_with_str(url))
        .await
        .map_err(|e| format!("fetching {url}: {e:?}"))?
        .dyn_into()
        .map_err(|_| format!("fetching {url}: not a response"))?;
    if !resp.ok() {
        return Err(format!("fetching {url}: HTTP {}", resp.status()));
    }
    let buf = JsFuture::from(resp.array_buffer().map_err(|e| format!("{e:?}"))?)
        .await
        .map_err(|e| format!("reading {url}: {e:?}"))?;
    Ok(js_sys::Uint8Array::new(&buf).to_vec())
}

/// The whole page, given the checkpoint's bytes: adapter line, positional table, module
/// summary, a random batch's accuracy line, and the first sequence reversed with its
/// attention drawn. Returns the model for the page's input box.
pub async fn run(checkpoint: &[u8]) -> PageResult<TransformerPredictor> {
    if !has_webgpu() {
        return Err(
            "this browser has no WebGPU (navigator.gpu is missing): wgnn's kernels are \
                    compute shaders, which WebGL cannot run. Chrome and Edge 113 or later have \
                    WebGPU; in Firefox and Safari it may need enabling."
                .into(),
        );
    }
    let gpu = Device::gpu_async().await.map_err(err)?;
    let adapter = gpu.as_gpu().map(|g| g.adapter()).unwrap_or_default();
    set_text("adapter", &format!("device: {adapter}"))?;
    draw_positional_table(&gpu).await?;
    let mut model = load_model(checkpoint, &gpu)?;
    set_text(
        "summary",
        &format!(
            "{}\npositional_encoding.pe is a non-persistent buffer: wgnn built it in the page; \
             the checkpoint did not contain it",
            model.summary()
        ),
    )?;
    let x = random_batch(BATCH, 7);
    let preds = predict(&mut model, &x).await?;
    set_text("accuracy", &accuracy_line(&x, &preds))?;
    reverse_and_draw(&mut model, &x[..SEQ]).await?;
    Ok(model)
}

/// The page's entry point: fetches the checkpoint next to the page and runs it; the input box
/// reverses what the user types.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    spawn_local(async {
        let result = async {
            set_text("status", "loading…")?;
            let bytes = fetch_bytes("reverse.ckpt").await?;
            // The model is taken out while a reversal runs (a second one meanwhile is "busy").
            let model = Rc::new(RefCell::new(Some(run(&bytes).await?)));
            set_text("status", "ready: type 16 digits and press Enter")?;
            let input: HtmlInputElement = document()?
                .get_element_by_id("digits")
                .ok_or("the page has no #digits")?
                .dyn_into()
                .map_err(|_| "#digits is not an input".to_string())?;
            let on_change = Closure::<dyn FnMut()>::new({
                let input = input.clone();
                move || {
                    let (model, text) = (model.clone(), input.value());
                    spawn_local(async move {
                        let taken = model.borrow_mut().take();
                        let r = match (parse_digits(&text), taken) {
                            (Ok(d), Some(mut m)) => {
                                let r = reverse_and_draw(&mut m, &d).await.map(|_| ());
                                *model.borrow_mut() = Some(m);
                                r
                            }
                            (Ok(_), None) => Err("busy: try again".into()),
                            (Err(e), taken) => {
                                *model.borrow_mut() = taken;
                                Err(e)
                            }
                        };
                        let _ = set_text("status", &r.err().unwrap_or_else(|| "ready".into()));
                    });
                }
            });
            input.set_onchange(Some(on_change.as_ref().unchecked_ref()));
            on_change.forget();
            PageResult::Ok(())
        }
        .await;
        if let Err(e) = result {
            let _ = set_text("status", &format!("error: {e}"));
        }
    });
}

/// Milliseconds since the page started (`performance.now()`).
fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| js_sys::Reflect::get(&w, &JsValue::from_str("performance")).ok())
        .and_then(|p| {
            let f = js_sys::Reflect::get(&p, &JsValue::from_str("now")).ok()?;
            let f: js_sys::Function = f.dyn_into().ok()?;
            f.call0(&p).ok()?.as_f64()
        })
        .unwrap_or(0.0)
}

/// The browser's side of the native bench's figures, for the note (not a timed test): the
/// `[5000, 512]` positional table generated on WebGPU and read back, and the reverse-task
/// model's eval forward of `[128, 16]`, each the median of `runs` after a warm-up.
#[wasm_bindgen]
pub async fn bench(runs: usize) -> Result<String, JsValue> {
    let gpu = Device::gpu_async()
        .await
        .map_err(|e| JsValue::from_str(&err(e)))?;
    let fail = |e: String| JsValue::from_str(&e);
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut table = Vec::new();
    for i in 0..=runs {
        let t = now_ms();
        let pe = ops::positional_table_async(5000, 512, &gpu)
            .await
            .map_err(|e| fail(err(e)))?;
        pe.to_vec_async::<f32>().await.map_err(|e| fail(err(e)))?;
        if i > 0 {
            table.push(now_ms() - t);
        }
    }
    let bytes = fetch_bytes("reverse.ckpt").await.map_err(fail)?;
    let mut model = load_model(&bytes, &gpu).map_err(fail)?;
    let x = random_batch(128, 3);
    let mut forward = Vec::new();
    for i in 0..=runs {
        let t = now_ms();
        predict(&mut model, &x).await.map_err(fail)?;
        if i > 0 {
            forward.push(now_ms() - t);
        }
    }
    Ok(format!(
        "positional table [5000, 512] on the GPU, read back: {:.1} ms; reverse-task forward \
         [128, 16] with argmax read back: {:.1} ms (medians of {runs})",
        median(table),
        median(forward)
    ))
}
