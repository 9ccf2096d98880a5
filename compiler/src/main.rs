//! The `relaydc` command.
fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let code = relaydc::cli::run(args, &mut std::io::stdout(), &mut std::io::stderr());
    std::process::exit(code);
}
