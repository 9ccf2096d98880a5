//! Generates the parser from `src/parse/grammar.lalrpop`.
fn main() {
    lalrpop::Configuration::new()
        .use_cargo_dir_conventions()
        .process_file("src/parse/grammar.lalrpop")
        .unwrap_or_else(|e| {
            eprintln!("lalrpop failed: {e}");
            std::process::exit(1)
        });
    println!("cargo:rerun-if-changed=src/parse/grammar.lalrpop");
}
