//! The Wasm rows: the example component `examples/hello-wasm` (built for wasm32-wasip2 by the
//! testkit's builder) and its floor, `wasmtime serve` of the same component precompiled with
//! `wasmtime compile`: spawn + poll until the first response byte. That is what a platform that
//! starts one process per function at scale from zero pays at best.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::floor::{KillOnDrop, poll_first_byte, quiet};
use crate::http;

/// The component, built into `dir`; `Err` says why it cannot be (the target is missing).
pub fn component(dir: &Path) -> Result<PathBuf, String> {
    nimbus_testkit::build_hello_wasm(dir).ok_or_else(|| {
        "the wasm32-wasip2 target is missing: rustup target add wasm32-wasip2".into()
    })
}

/// `wasmtime serve` of a precompiled component, started afresh for every run.
pub struct WasmtimeFloor {
    wasmtime: PathBuf,
    precompiled: PathBuf,
}

impl WasmtimeFloor {
    /// Precompile `component` into `dir` with `wasmtime compile`.
    pub fn new(wasmtime: &Path, component: &Path, dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let precompiled = dir.join("hello.cwasm");
        let status = quiet(Command::new(wasmtime).arg("compile").arg(component))
            .arg("-o")
            .arg(&precompiled)
            .status()
            .map_err(|e| format!("running {}: {e}", wasmtime.display()))?;
        if !status.success() {
            return Err(format!(
                "wasmtime compile {} failed: {status}",
                component.display()
            ));
        }
        Ok(Self {
            wasmtime: wasmtime.to_owned(),
            precompiled,
        })
    }

    /// Spawn `wasmtime serve` on a free port and time until its first response byte.
    pub fn run(&self) -> Result<Duration, String> {
        let port = http::free_port().map_err(|e| e.to_string())?;
        let start = Instant::now();
        let child = quiet(Command::new(&self.wasmtime).args(["serve", "-Scli"]))
            .args([
                "--allow-precompiled",
                "--addr",
                &format!("127.0.0.1:{port}"),
            ])
            .arg(&self.precompiled)
            .spawn()
            .map_err(|e| e.to_string())?;
        let _guard = KillOnDrop(child);
        poll_first_byte(port, start)
    }
}
