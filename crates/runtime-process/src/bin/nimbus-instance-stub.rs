//! `nimbus-instance-stub`: the instance stub as a program of its own, for runtimes embedded in
//! programs that cannot run it themselves (tests, examples); see
//! [`nimbus_runtime_process::StubCommand::beside_executable`]. The `nimbus` binary runs the same
//! code through a hidden first argument instead.

fn main() {
    nimbus_runtime_process::run_instance_stub()
}
