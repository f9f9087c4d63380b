//! `nimbus image import|pull|ls` and `nimbus registry login`: the image store of an embedded
//! Nimbus (`<data-dir>/images`) used directly, like `ctr`/`crictl` on a node — no server
//! round trip, and a running server sees the result at once (references are re-read on use).

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use nimbus_image::{ImageStore, Progress, StoreOptions};

/// `nimbus image …`
#[derive(clap::Subcommand)]
pub enum ImageCommand {
    /// Import a `docker save` archive or an OCI image layout (directory or tar).
    Import { file: PathBuf },
    /// Pull an image from its registry (credentials from `nimbus registry login`).
    Pull {
        reference: String,
        /// Registries (host:port) spoken to over plain HTTP; loopback ones always are.
        #[arg(long = "insecure-registry")]
        insecure: Vec<String>,
    },
    /// List stored images.
    #[command(alias = "list")]
    Ls,
}

/// Where the server keeps images and registry credentials.
pub fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("images")
}

pub fn auth_file(data_dir: &Path) -> PathBuf {
    data_dir.join("registry-auth.json")
}

pub fn open_store(data_dir: &Path, insecure: Vec<String>) -> anyhow::Result<ImageStore> {
    let options = StoreOptions {
        insecure_registries: insecure,
        auth_file: Some(auth_file(data_dir)),
    };
    let dir = store_dir(data_dir);
    ImageStore::open(&dir, options)
        .with_context(|| format!("opening the image store {}", dir.display()))
}

pub async fn run(data_dir: &Path, command: ImageCommand) -> anyhow::Result<()> {
    match command {
        ImageCommand::Import { file } => {
            let store = open_store(data_dir, vec![])?;
            let bars = Bars::new();
            let images = tokio::task::spawn_blocking(move || store.import(&file, &bars))
                .await
                .context("the import task failed")??;
            for image in images {
                println!("imported {} ({})", image.reference, image.digest);
            }
            Ok(())
        }
        ImageCommand::Pull {
            reference,
            insecure,
        } => {
            let store = open_store(data_dir, insecure)?;
            let image = store.pull(&reference, &Bars::new()).await?;
            println!("pulled {} ({})", image.reference, image.digest);
            Ok(())
        }
        ImageCommand::Ls => list(data_dir),
    }
}

fn list(data_dir: &Path) -> anyhow::Result<()> {
    let images = open_store(data_dir, vec![])?.list()?;
    let width = images
        .iter()
        .map(|i| i.reference.len())
        .max()
        .unwrap_or(0)
        .max("REFERENCE".len());
    println!(
        "{:width$}   {:19}   {:>10}   UNPACKED",
        "REFERENCE", "DIGEST", "SIZE"
    );
    for i in images {
        let short = i.digest.get(..19).unwrap_or(&i.digest);
        let unpacked = if i.unpacked { "yes" } else { "no" };
        println!(
            "{:width$}   {short:19}   {:>10}   {unpacked}",
            i.reference,
            indicatif::HumanBytes(i.size).to_string()
        );
    }
    Ok(())
}

/// `nimbus registry login HOST -u USER (--password-stdin | -p PASSWORD)`.
pub fn login(
    data_dir: &Path,
    registry: &str,
    username: &str,
    password: Option<String>,
    password_stdin: bool,
) -> anyhow::Result<()> {
    let password = match (password, password_stdin) {
        (Some(p), false) => p,
        (None, true) => {
            let mut p = String::new();
            std::io::stdin()
                .read_to_string(&mut p)
                .context("reading the password from standard input")?;
            p.trim_end_matches(['\n', '\r']).to_owned()
        }
        _ => anyhow::bail!("give exactly one of --password and --password-stdin"),
    };
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    nimbus_image::login(&auth_file(data_dir), registry, username, &password)?;
    println!(
        "credentials for {registry} saved in {}",
        auth_file(data_dir).display()
    );
    Ok(())
}

/// One progress bar per layer, on standard error (hidden when it is not a terminal).
struct Bars {
    multi: MultiProgress,
    layers: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    fn new() -> Self {
        Self {
            multi: MultiProgress::new(),
            layers: Mutex::default(),
        }
    }

    fn bar(&self, digest: &str, total: Option<u64>) -> ProgressBar {
        let mut layers = self.layers.lock().expect("progress bars poisoned");
        layers
            .entry(digest.to_owned())
            .or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(total.unwrap_or(0)));
                let style = ProgressStyle::with_template(
                    "{prefix:.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                bar.set_style(style);
                let short = digest.trim_start_matches("sha256:");
                bar.set_prefix(short.get(..12).unwrap_or(short).to_owned());
                bar
            })
            .clone()
    }
}

impl Progress for Bars {
    fn layer(&self, digest: &str, done: u64, total: Option<u64>) {
        let bar = self.bar(digest, total);
        if let Some(total) = total {
            bar.set_length(total);
        }
        bar.set_position(done);
        if total == Some(done) {
            bar.finish();
        }
    }

    fn message(&self, text: &str) {
        let _ = self.multi.println(text);
    }
}
