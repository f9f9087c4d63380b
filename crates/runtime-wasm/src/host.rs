//! The per-request store data: WASI context (environment, volumes preopened read-only, and
//! stdout/stderr into the instance's log), `wasi:http` context, the memory limiter and the outbound-request policy (both from the
//! revision's limits). One [`Host`] lives exactly as long as one request's instance; dropping it
//! writes the request's partial last output lines.

use nimbus_logs::Stream;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use crate::config::WasmRuntimeConfig;
use crate::instance::Started;
use crate::limits::{Limits, OutboundHosts};
use crate::output::GuestOutput;

/// The `T` of every `Store<T>`.
pub(crate) struct Host {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    outbound: OutboundPolicy,
    pub limits: MemoryLimit,
}

impl Host {
    /// A request's store data under its revision's `limits`, for an instance that `started`
    /// with its environment and volumes (each preopened read-only at its mount path). The
    /// guest's stdout and stderr go to the instance's log when it has one; otherwise to this
    /// process's when the config says `inherit_stdio`, else nowhere. Fails when a volume's
    /// directory cannot be opened.
    pub fn new(
        config: &WasmRuntimeConfig,
        limits: &Limits,
        started: &Started,
    ) -> wasmtime::Result<Self> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&started.env).args(&started.args);
        for volume in &started.preopens {
            wasi.preopened_dir(
                &volume.host,
                volume.path.to_string_lossy(),
                FsPerms::ReadOnly,
            )?;
        }
        match &started.log {
            Some(log) => {
                wasi.stdout(GuestOutput::new(log, Stream::Stdout))
                    .stderr(GuestOutput::new(log, Stream::Stderr));
            }
            None if config.inherit_stdio => {
                wasi.inherit_stdout().inherit_stderr();
            }
            None => {}
        }
        Ok(Self {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            outbound: OutboundPolicy(limits.outbound.clone()),
            limits: MemoryLimit::new(limits.memory_bytes),
        })
    }
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

// === impl MemoryLimit ===

/// Caps the total linear memory of one instance (all its memories together) and remembers
/// whether the cap was hit, so a trap that follows can be reported as "memory limit exceeded".
pub(crate) struct MemoryLimit {
    max: usize,
    used: usize,
    pub exceeded: bool,
}

impl MemoryLimit {
    fn new(max: usize) -> Self {
        Self {
            max,
            used: 0,
            exceeded: false,
        }
    }
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let used = self.used.saturating_sub(current).saturating_add(desired);
        if used > self.max {
            self.exceeded = true;
            return Ok(false);
        }
        let allowed = maximum.is_none_or(|m| desired <= m);
        if allowed {
            self.used = used;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|m| desired <= m))
    }
}

// === impl OutboundPolicy ===

/// Outgoing HTTP: denied (`HTTP-request-denied`) unless the authority is among the revision's
/// allowed hosts; allowed requests use wasmtime's default client.
struct OutboundPolicy(OutboundHosts);

type BoxFuture<T> = Box<dyn Future<Output = T> + Send>;
type Sent = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    BoxFuture<wasmtime_wasi_http::Result<()>>,
)>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_done: BoxFuture<wasmtime_wasi_http::Result<()>>,
    ) -> BoxFuture<Sent> {
        let authority = request.uri().authority().map(|a| a.as_str().to_owned());
        let allowed = authority.as_deref().is_some_and(|a| self.0.allows(a));
        if !allowed {
            tracing::debug!(?authority, "outgoing request denied");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            let io: BoxFuture<wasmtime_wasi_http::Result<()>> = Box::new(io);
            Ok((response.map(BodyExt::boxed_unsync), io))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limit_counts_all_memories_and_remembers_denials() {
        let mut limit = MemoryLimit::new(100);
        assert!(limit.memory_growing(0, 60, None).unwrap());
        assert!(limit.memory_growing(0, 30, None).unwrap());
        assert!(!limit.exceeded);
        assert!(
            !limit.memory_growing(60, 80, None).unwrap(),
            "60+30 → 80+30 > 100"
        );
        assert!(limit.exceeded);
        assert!(limit.memory_growing(30, 40, None).unwrap());
        assert!(
            !limit.memory_growing(0, 10, Some(5)).unwrap(),
            "module maximum"
        );
    }
}
