//! [`OciLauncher`]: the supervisor's [`Launcher`] for container images. `prepare` makes sure
//! the revision's image is stored and unpacked (once; later calls hit a per-revision cache);
//! `command` builds the instance's bundle and returns `runc run` for it; `exec` runs a probe
//! inside; `cleanup` deletes the container, unmounts its rootfs and removes the bundle. A
//! container with a network of its own is attached before its bundle is written, answers
//! `address` with its address and [`CONTAINER_PORT`], and is detached on cleanup. With user
//! namespaces configured, each container's namespaces are made (`userns::Pinned`) before its
//! network is attached, held until cleanup, and its root is mounted idmapped;
//! [`OciLauncher::check`] tells at startup whether the host can do that.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use nimbus_image::{Image, ImageStore};
use nimbus_runtime::{InstanceSpec, RevisionKey};
use nimbus_runtime_process::{LaunchContext, LaunchError, Launcher};

use crate::bundle::{self, ContainerParts, JoinedUserNamespace};
use crate::config::OciConfig;
use crate::error::ContainerError;
use crate::network::{Attachment, CONTAINER_PORT, Network};
use crate::process;
use crate::rootfs::OverlayError;
use crate::runc::Runc;
use crate::setup::{self, Layout};
use crate::user::{self, ResolvedUser, UserRequest};
use crate::userns::{self, Pinned, Roots, UserNsError};

/// Runs instances as runc containers of their revision's image (see the crate docs).
pub struct OciLauncher {
    store: Option<Arc<ImageStore>>,
    config: OciConfig,
    runc: Runc,
    /// Per revision: the reference as the manifest wrote it, and the image it resolved to.
    images: Mutex<HashMap<RevisionKey, (String, Arc<Image>)>>,
    /// Where a revision's image being ready (`Pulled`) is reported; set once.
    notices: std::sync::OnceLock<Arc<dyn nimbus_runtime::InstanceNotices>>,
    overlay_warned: AtomicBool,
    cgroup_v2: bool,
    /// The containers' network (`None`: all share the host's).
    network: Option<Network>,
    /// The network of each container that has one, by instance id, and the port it listens
    /// on there.
    attachments: Mutex<HashMap<String, (Attachment, u16)>>,
    /// With user namespaces: where containers' roots are mounted.
    roots: Option<Roots>,
    /// The user (and network) namespace of each container that has one, by instance id.
    pinned: Mutex<HashMap<String, Pinned>>,
}

// === impl OciLauncher ===

impl OciLauncher {
    /// A launcher pulling images into `store`.
    pub fn new(store: Arc<ImageStore>, config: OciConfig) -> Self {
        Self::build(Some(store), config)
    }

    /// A launcher without an image store: only revisions given to
    /// [`OciLauncher::with_image`] can run (tests, embedding).
    pub fn without_store(config: OciConfig) -> Self {
        Self::build(None, config)
    }

    fn build(store: Option<Arc<ImageStore>>, config: OciConfig) -> Self {
        let tag = config.state_root.to_string_lossy();
        let network = config.network.clone().map(|net| Network::new(net, &tag));
        let roots = (config.user_namespaces.as_ref()).map(|u| Roots::new(u, &config.state_root));
        Self {
            store,
            runc: Runc::new(&config.runc, &config.state_root),
            network,
            attachments: Mutex::default(),
            roots,
            pinned: Mutex::default(),
            config,
            images: Mutex::default(),
            notices: std::sync::OnceLock::new(),
            overlay_warned: AtomicBool::new(false),
            cgroup_v2: Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
        }
    }

    /// Use `image` for `revision` (whose spec names `reference`) without asking the store.
    pub fn with_image(&self, revision: RevisionKey, reference: &str, image: Image) {
        self.cache()
            .insert(revision, (reference.to_owned(), Arc::new(image)));
    }

    /// Report each revision's image, once pulled or found in the store, to `notices` (the
    /// kubelet's `Pulled` event). Set once; a second call returns `false`.
    pub fn set_notices(&self, notices: Arc<dyn nimbus_runtime::InstanceNotices>) -> bool {
        self.notices.set(notices).is_ok()
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &OciConfig {
        &self.config
    }

    /// Whether this host can run containers as configured; call once before the first start.
    /// Without user namespaces there is nothing to check. With them: containers get networks
    /// of their own, the kernel allows user namespaces, the server can make one with its
    /// mapping, the image store's filesystem takes idmapped mounts, and the roots directory
    /// can be made reachable by the mapped root (see `userns`).
    pub fn check(&self) -> Result<(), ContainerError> {
        let (Some(userns), Some(roots)) = (&self.config.user_namespaces, &self.roots) else {
            return Ok(());
        };
        let images = match &self.store {
            Some(store) => store.root(),
            None => &self.config.state_root,
        };
        let setup = userns::Setup {
            has_network: self.network.is_some(),
            overlay: self.config.overlay,
            images,
        };
        userns::check(userns, &setup, roots)?;
        Ok(())
    }

    /// Where the root filesystem of instance `ctx` is mounted while it runs.
    pub fn root_mount(&self, ctx: &LaunchContext) -> std::path::PathBuf {
        self.layout(ctx).root
    }

    fn layout(&self, ctx: &LaunchContext) -> Layout {
        Layout::new(&ctx.scratch, self.roots.as_ref(), &ctx.id)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<RevisionKey, (String, Arc<Image>)>> {
        self.images
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached image of `spec`'s revision, if it is for the reference the spec names.
    fn cached(&self, spec: &InstanceSpec) -> Option<Arc<Image>> {
        let cache = self.cache();
        let (reference, image) = cache.get(&spec.revision)?;
        (Some(reference) == spec.image.as_ref()).then(|| Arc::clone(image))
    }

    /// The revision's image, pulled and unpacked if need be.
    async fn ensure_image(&self, spec: &InstanceSpec) -> Result<Arc<Image>, ContainerError> {
        if let Some(image) = self.cached(spec) {
            return Ok(image);
        }
        let reference = spec.image.as_deref().ok_or(ContainerError::NoImage)?;
        let store = self.store.as_ref().ok_or_else(|| not_prepared(spec))?;
        let started = std::time::Instant::now();
        let image = store.ensure(reference, &*self.config.pull_progress).await?;
        if let Some(notices) = self.notices.get() {
            notices.notice(&spec.revision, pulled(reference, &image, started.elapsed()));
        }
        self.with_image(spec.revision.clone(), reference, image);
        self.cached(spec).ok_or_else(|| not_prepared(spec))
    }

    fn attachments(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Attachment, u16)>> {
        self.attachments
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn pinned(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pinned>> {
        self.pinned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Build the bundle (after giving the container its user namespace, if configured, and its
    /// network, unless it shares the host's) and return `runc run` for it.
    fn start(&self, spec: &InstanceSpec, ctx: &LaunchContext) -> Result<Command, ContainerError> {
        if let Some((leftover, _)) = self.attachments().remove(&ctx.id) {
            leftover.release(); // its container is deleted before this one starts
        }
        self.pinned().remove(&ctx.id);
        let pinned = self.pin(spec)?;
        let netns = pinned.as_ref().map(Pinned::net);
        let network = match &self.network {
            Some(network) if !spec.security.host_network => Some(network.attach(&ctx.id, netns)?),
            _ => None,
        };
        let started = self.start_attached(spec, ctx, network.as_ref(), pinned.as_ref());
        if let Some(network) = network {
            if started.is_ok() {
                self.attachments()
                    .insert(ctx.id.clone(), (network, container_port(spec)));
            } else {
                // The namespace ends with its descriptor: no process is in it yet.
                network.release();
            }
        }
        if let (Some(pinned), true) = (pinned, started.is_ok()) {
            self.pinned().insert(ctx.id.clone(), pinned);
        }
        started
    }

    /// The container's own user namespace and the network namespace it owns, when configured.
    fn pin(&self, spec: &InstanceSpec) -> Result<Option<Pinned>, ContainerError> {
        let Some(userns) = &self.config.user_namespaces else {
            return Ok(None);
        };
        if self.network.is_none() {
            return Err(UserNsError::NeedsNetwork.into());
        }
        if !self.config.overlay {
            return Err(UserNsError::NoOverlay.into());
        }
        if spec.security.host_network {
            return Err(UserNsError::HostNetwork.into());
        }
        Ok(Some(Pinned::new(userns.range)?))
    }

    /// [`OciLauncher::start`] once the network is decided.
    fn start_attached(
        &self,
        spec: &InstanceSpec,
        ctx: &LaunchContext,
        network: Option<&Attachment>,
        pinned: Option<&Pinned>,
    ) -> Result<Command, ContainerError> {
        let image = self.cached(spec).ok_or_else(|| not_prepared(spec))?;
        let args = argv(&image, spec)?;
        let account = user::read_account_files(&image.rootfs);
        let user = user::resolve(user_request(&image, spec), &account)?;
        let userns = self.user_namespace(&user, spec, pinned)?;
        let layout = self.layout(ctx);
        let bundle = &layout.bundle;
        setup::fresh_bundle(&self.runc, &layout, &ctx.id)?;
        let mut host = setup::host_files(&self.config.resolv_conf, &self.config.hosts, bundle)?;
        if let (Some(own), Some(_)) = (&self.network, network) {
            host.resolv_conf = own.resolv_conf(&host.resolv_conf, bundle)?;
        }
        let hostname = bundle::hostname(&ctx.id);
        let root = self.mount_root(&image, &layout, pinned)?;
        let netns = network.map(Attachment::netns_path);
        let env = instance_env(&ctx.env, network.map(|_| container_port(spec)));
        let parts = ContainerParts {
            id: &ctx.id,
            args,
            env: process::environment(&hostname, &user.home, &image.config.env, &env),
            cwd: process::working_dir(
                spec.working_dir.as_deref(),
                image.config.working_dir.as_deref(),
            ),
            user: &user,
            root,
            host_files: &host,
            resources: &spec.resources,
            default_pids_limit: self.config.default_pids_limit,
            cgroup: ctx.cgroup.as_deref(),
            cgroup_v2: self.cgroup_v2,
            security: &spec.security,
            netns: netns.as_deref(),
            volumes: &ctx.mounts,
            userns,
        };
        let written = bundle::config(&parts)
            .map_err(ContainerError::from)
            .and_then(|config| setup::write_config(&config, bundle));
        if let Err(e) = written {
            setup::remove_bundle(&layout);
            return Err(e);
        }
        Ok(self.runc.run(bundle, &ctx.id))
    }

    /// The user namespace `pinned` for a process with `user`'s ids, if they are all in it.
    fn user_namespace(
        &self,
        user: &ResolvedUser,
        spec: &InstanceSpec,
        pinned: Option<&Pinned>,
    ) -> Result<Option<JoinedUserNamespace>, UserNsError> {
        let (Some(userns), Some(pinned)) = (&self.config.user_namespaces, pinned) else {
            return Ok(None);
        };
        userns.check_ids(user, &spec.security.supplemental_groups)?;
        Ok(Some(JoinedUserNamespace {
            path: pinned.user_path(),
            range: userns.range,
        }))
    }

    /// Mount the container's root: over the image as it is, or idmapped into `pinned`'s user
    /// namespace. Takes the bundle down again on failure.
    fn mount_root(
        &self,
        image: &Image,
        layout: &Layout,
        pinned: Option<&Pinned>,
    ) -> Result<bundle::RootChoice, ContainerError> {
        let (Some(pinned), Some(userns), Some(roots)) =
            (pinned, &self.config.user_namespaces, &self.roots)
        else {
            let warn = |e: &OverlayError| self.warn_overlay_once(e);
            let overlay = self.config.overlay;
            return Ok(setup::mount_root(&image.rootfs, layout, overlay, warn));
        };
        let (bundle, root) = (&layout.bundle, &layout.root);
        let mounted = roots.prepare().and_then(|()| {
            userns::mount_root(&image.rootfs, pinned.user(), userns.range, bundle, root)
        });
        match mounted {
            Ok(()) => Ok(bundle::RootChoice::Overlay(layout.spec_root())),
            Err(e) => {
                setup::remove_bundle(layout);
                Err(e.into())
            }
        }
    }

    fn warn_overlay_once(&self, error: &OverlayError) {
        if !self.overlay_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "{error}; containers run on their image's shared root filesystem mounted \
                 read-only instead (writable: /tmp, /dev/shm)"
            );
        }
    }
}

#[async_trait]
impl Launcher for OciLauncher {
    async fn prepare(&self, spec: &InstanceSpec) -> Result<(), LaunchError> {
        let image = self.ensure_image(spec).await?;
        argv(&image, spec)?;
        Ok(())
    }

    fn command(&self, spec: &InstanceSpec, ctx: &LaunchContext) -> Result<Command, LaunchError> {
        Ok(self.start(spec, ctx)?)
    }

    fn exec(&self, _spec: &InstanceSpec, ctx: &LaunchContext, argv: &[String]) -> Command {
        self.runc.exec(&ctx.id, argv)
    }

    async fn cleanup(&self, ctx: &LaunchContext) {
        let (runc, id) = (self.runc.clone(), ctx.id.clone());
        let layout = self.layout(ctx);
        let done = tokio::task::spawn_blocking(move || {
            setup::run_quietly(runc.delete(&id), &id);
            setup::remove_bundle(&layout);
        });
        if let Err(e) = done.await {
            tracing::warn!(container = %ctx.id, "container cleanup panicked: {e}");
        }
        let attachment = self.attachments().remove(&ctx.id).map(|(a, _)| a);
        if let (Some(network), Some(attachment)) = (&self.network, attachment) {
            network.detach(attachment).await;
        }
        self.pinned().remove(&ctx.id);
    }

    /// runc creates/joins `cgroupsPath` = `/<ctx.cgroup>` and applies the limits itself.
    fn joins_cgroup_itself(&self) -> bool {
        true
    }

    /// A container with a network of its own serves at its address, on its `containerPort`.
    fn address(&self, ctx: &LaunchContext) -> Option<SocketAddr> {
        let attachments = self.attachments();
        let (attachment, port) = attachments.get(&ctx.id)?;
        Some(SocketAddr::from((attachment.addr, *port)))
    }
}

/// The kubelet's `Pulled`: the image is in the store (pulled now, or already there).
fn pulled(
    reference: &str,
    image: &Image,
    took: std::time::Duration,
) -> nimbus_runtime::InstanceNotice {
    nimbus_runtime::InstanceNotice {
        warning: false,
        reason: "Pulled".into(),
        message: format!(
            "image \"{reference}\" ({}) ready in {} ms (pulled, or already in the image store)",
            image.digest,
            took.as_millis()
        ),
    }
}

/// Where a container with a network of its own listens: the manifest's `containerPort`, else
/// [`CONTAINER_PORT`] (Knative's default).
fn container_port(spec: &InstanceSpec) -> u16 {
    spec.container_port.unwrap_or(CONTAINER_PORT)
}

/// The instance's environment; in a network of its own (`own_port`), `PORT` is that port (the
/// supervisor's loopback port means nothing there).
fn instance_env(env: &[(String, String)], own_port: Option<u16>) -> Vec<(String, String)> {
    env.iter()
        .map(|(name, value)| match (own_port, name.as_str()) {
            (Some(port), "PORT") => (name.clone(), port.to_string()),
            _ => (name.clone(), value.clone()),
        })
        .collect()
}

/// argv by Kubernetes' rules; an error when nothing names a program.
fn argv(image: &Image, spec: &InstanceSpec) -> Result<Vec<String>, ContainerError> {
    let config = &image.config;
    let argv = process::argv(&config.entrypoint, &config.cmd, &spec.command, &spec.args);
    if argv.is_empty() {
        return Err(ContainerError::NoCommand {
            reference: image.reference.clone(),
        });
    }
    Ok(argv)
}

fn user_request<'a>(image: &'a Image, spec: &InstanceSpec) -> UserRequest<'a> {
    UserRequest {
        image_user: image.config.user.as_deref(),
        run_as_user: spec.run_as_user,
        run_as_group: spec.run_as_group,
        run_as_non_root: spec.run_as_non_root,
    }
}

fn not_prepared(spec: &InstanceSpec) -> ContainerError {
    ContainerError::NotPrepared {
        revision: spec.revision.to_string(),
    }
}
