//! What the examples share: the `--device` flag and the pictures (a colour ramp, a tiny bitmap
//! font, PNG output). Each example includes it with `#[path = "common/mod.rs"] mod common;`.
#![allow(dead_code)]

use wgnn::Device;

/// Where an example runs (`--device`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    /// The host: every op's multi-threaded CPU path.
    Cpu,
    /// `Device::gpu()`: honours WGPU_BACKEND, WGPU_POWER_PREF and WGPU_ADAPTER_NAME.
    Gpu,
    /// `Device::software()`: lavapipe, llvmpipe or WARP.
    Software,
}

impl DeviceArg {
    pub fn open(self) -> wgnn::Result<Device> {
        match self {
            DeviceArg::Cpu => Ok(Device::Cpu),
            DeviceArg::Gpu => Device::gpu(),
            DeviceArg::Software => Device::software(),
        }
    }
}

/// Parses a whole number that must be at least 1 (for clap's `value_parser`).
pub fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        Ok(_) => Err("must be at least 1".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// A dark-blue → teal → yellow ramp (close to viridis) for p in [0, 1].
pub fn color(p: f32) -> [u8; 3] {
    let stops: [[f32; 3]; 4] = [
        [68., 1., 84.],
        [49., 104., 142.],
        [53., 183., 121.],
        [253., 231., 37.],
    ];
    let x = p.clamp(0.0, 1.0) * 3.0;
    let i = (x as usize).min(2);
    let t = x - i as f32;
    let mut c = [0u8; 3];
    for k in 0..3 {
        c[k] = (stops[i][k] + (stops[i + 1][k] - stops[i][k]) * t) as u8;
    }
    c
}

/// An RGB picture being drawn.
pub struct Canvas {
    pub w: usize,
    pub h: usize,
    pub rgb: Vec<u8>,
}

/// A 3×5 bitmap per character (rows top to bottom, 3 bits each, high bit left).
fn glyph(c: char) -> [u8; 5] {
    match c.to_ascii_uppercase() {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        'A' => [2, 5, 7, 5, 5],
        'B' => [6, 5, 6, 5, 6],
        'C' => [3, 4, 4, 4, 3],
        'D' => [6, 5, 5, 5, 6],
        'E' => [7, 4, 6, 4, 7],
        'F' => [7, 4, 6, 4, 4],
        'G' => [3, 4, 5, 5, 3],
        'H' => [5, 5, 7, 5, 5],
        'I' => [7, 2, 2, 2, 7],
        'J' => [1, 1, 1, 5, 2],
        'K' => [5, 5, 6, 5, 5],
        'L' => [4, 4, 4, 4, 7],
        'M' => [5, 7, 7, 5, 5],
        'N' => [6, 5, 5, 5, 5],
        'O' => [2, 5, 5, 5, 2],
        'P' => [6, 5, 6, 4, 4],
        'Q' => [2, 5, 5, 6, 3],
        'R' => [6, 5, 6, 5, 5],
        'S' => [3, 4, 2, 1, 6],
        'T' => [7, 2, 2, 2, 2],
        'U' => [5, 5, 5, 5, 7],
        'V' => [5, 5, 5, 5, 2],
        'W' => [5, 5, 7, 7, 5],
        'X' => [5, 5, 2, 5, 5],
        'Y' => [5, 5, 2, 2, 2],
        'Z' => [7, 1, 2, 4, 7],
        '-' => [0, 0, 7, 0, 0],
        '_' => [0, 0, 0, 0, 7],
        '.' => [0, 0, 0, 0, 2],
        ',' => [0, 0, 0, 2, 4],
        ':' => [0, 2, 0, 2, 0],
        '(' => [1, 2, 2, 2, 1],
        ')' => [4, 2, 2, 2, 4],
        '[' => [3, 2, 2, 2, 3],
        ']' => [6, 2, 2, 2, 6],
        '+' => [0, 2, 7, 2, 0],
        '=' => [0, 7, 0, 7, 0],
        '/' => [1, 1, 2, 4, 4],
        '×' | '*' => [0, 5, 2, 5, 0],
        _ => [0; 5],
    }
}

impl Canvas {
    pub fn new(w: usize, h: usize) -> Canvas {
        Canvas {
            w,
            h,
            rgb: vec![255; w * h * 3],
        }
    }

    pub fn put(&mut self, x: usize, y: usize, c: [u8; 3]) {
        if x < self.w && y < self.h {
            let i = (y * self.w + x) * 3;
            self.rgb[i..i + 3].copy_from_slice(&c);
        }
    }

    pub fn fill(&mut self, x: usize, y: usize, w: usize, h: usize, c: [u8; 3]) {
        for dy in 0..h {
            for dx in 0..w {
                self.put(x + dx, y + dy, c);
            }
        }
    }

    /// Pixels `text` takes across at `scale` (4 × scale per character).
    pub fn text_width(text: &str, scale: usize) -> usize {
        text.chars().count() * 4 * scale
    }

    /// Draws `text` with its top-left corner at (x, y), each font pixel `scale` pixels square.
    pub fn text(&mut self, x: usize, y: usize, text: &str, scale: usize, c: [u8; 3]) {
        for (i, ch) in text.chars().enumerate() {
            for (row, bits) in glyph(ch).iter().enumerate() {
                for col in 0..3 {
                    if bits >> (2 - col) & 1 == 1 {
                        self.fill(x + (i * 4 + col) * scale, y + row * scale, scale, scale, c);
                    }
                }
            }
        }
    }

    /// Draws `text` downwards, one character under the other (a vertical axis title).
    pub fn text_down(&mut self, x: usize, y: usize, text: &str, scale: usize, c: [u8; 3]) {
        for (i, ch) in text.chars().enumerate() {
            self.text(x, y + i * 6 * scale, &ch.to_string(), scale, c);
        }
    }

    pub fn save_png(&self, path: &str) -> wgnn::Result<()> {
        let file = std::fs::File::create(path)
            .map_err(|e| wgnn::Error::InvalidArgument(format!("{path}: {e}")))?;
        let mut enc =
            png::Encoder::new(std::io::BufWriter::new(file), self.w as u32, self.h as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let png_err = |e: png::EncodingError| wgnn::Error::InvalidArgument(format!("{path}: {e}"));
        let mut writer = enc.write_header().map_err(png_err)?;
        writer.write_image_data(&self.rgb).map_err(png_err)?;
        writer.finish().map_err(png_err)
    }
}
