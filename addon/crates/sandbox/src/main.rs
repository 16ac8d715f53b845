//! `tsbox-sandbox`: one per sandbox. For now it only identifies itself; the control-socket
//! protocol arrives with the sandbox engine.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version") | Some("-v") => {
            println!("tsbox-sandbox {}", tsbox_sys::VERSION);
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: tsbox-sandbox --version");
            ExitCode::from(2)
        }
    }
}
