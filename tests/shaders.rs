//! The shader gate (CPU only): every `shaders/*.wgsl` parses and validates with WebGPU's
//! baseline capabilities, and translates to SPIR-V, MSL, HLSL and GLSL — so the Vulkan, Metal,
//! DX12 and GL paths are known to compile even where no such GPU is at hand.

use std::path::{Path, PathBuf};

use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};

/// Parses, validates and translates one WGSL source; the error names the file and line.
fn gate(path: &Path, source: &str) -> Result<Vec<&'static str>, String> {
    let name = path.display().to_string();
    let module = naga::front::wgsl::parse_str(source)
        .map_err(|e| e.emit_to_string_with_path(source, &name))?;
    let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
        .validate(&module)
        .map_err(|e| e.emit_to_string_with_path(source, &name))?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let entry = module
        .entry_points
        .iter()
        .find(|e| e.name == stem)
        .ok_or_else(|| {
            format!("{name}: no entry point named {stem:?} (file stem = entry point = kernel name)")
        })?;
    assert_eq!(entry.stage, naga::ShaderStage::Compute, "{name}");

    spv::write_vec(&module, &info, &spv::Options::default(), None)
        .map_err(|e| format!("{name}: SPIR-V: {e}"))?;

    let mut out = String::new();
    let pipeline = msl::PipelineOptions::default();
    msl::Writer::new(&mut out)
        .write(&module, &info, &msl::Options::default(), &pipeline)
        .map_err(|e| format!("{name}: MSL: {e}"))?;

    let mut out = String::new();
    let pipeline = hlsl::PipelineOptions::default();
    hlsl::Writer::new(&mut out, &hlsl::Options::default(), &pipeline)
        .write(&module, &info, None)
        .map_err(|e| format!("{name}: HLSL: {e}"))?;

    let mut out = String::new();
    let options = glsl::Options {
        version: glsl::Version::Embedded {
            version: 310,
            is_webgl: false,
        },
        ..Default::default()
    };
    let pipeline = glsl::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: stem.clone(),
        multiview: None,
    };
    glsl::Writer::new(
        &mut out,
        &module,
        &info,
        &options,
        &pipeline,
        naga::proc::BoundsCheckPolicies::default(),
    )
    .and_then(|mut w| w.write())
    .map_err(|e| format!("{name}: GLSL ES 3.10: {e}"))?;
    Ok(vec!["spirv", "msl", "hlsl", "glsl"])
}

fn shader_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_shader_validates_and_translates_to_all_backends() {
    let files = shader_files();
    assert!(
        files.len() >= 4,
        "expected the kernels in shaders/, found {files:?}"
    );
    let mut failures = Vec::new();
    for f in &files {
        // As the kernel table builds it: the file, then the generated op codes.
        let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let src = std::fs::read_to_string(f).unwrap() + "\n" + &wgnn::__wgsl_prelude(stem);
        match gate(f, &src) {
            Ok(targets) => eprintln!("{}: ok ({})", f.display(), targets.join(", ")),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_gate_rejects_a_broken_shader_and_names_file_and_line() {
    let broken = "@compute @workgroup_size(64)\nfn broken(@builtin(global_invocation_id) id: vec3<u32>) {\n    let x: f32 = id.x;\n}\n";
    let path = Path::new("shaders/broken.wgsl");
    let err = gate(path, broken).unwrap_err();
    assert!(
        err.contains("shaders/broken.wgsl:3"),
        "error should name file and line: {err}"
    );
}

#[test]
fn the_gate_rejects_a_missing_entry_point() {
    let src = "@compute @workgroup_size(64)\nfn main() {}\n";
    let err = gate(Path::new("shaders/other_name.wgsl"), src).unwrap_err();
    assert!(err.contains("no entry point named \"other_name\""), "{err}");
}
