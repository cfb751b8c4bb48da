//! The `ctxlog` command-line tool; see `ctxlog --help`.

mod cli;

fn main() {
    std::process::exit(cli::run());
}
