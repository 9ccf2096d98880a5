//! The `relayd-run` command.
fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let code = relayd_run::cli::run(args, &mut std::io::stdout(), &mut std::io::stderr());
    std::process::exit(code);
}
