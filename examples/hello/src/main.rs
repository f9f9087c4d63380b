//! The `nimbus-hello` binary: a thin tokio main around [`nimbus_hello::run`].

#[tokio::main]
async fn main() {
    if let Err(error) = nimbus_hello::run().await {
        eprintln!("nimbus-hello: {error}");
        std::process::exit(1);
    }
}
