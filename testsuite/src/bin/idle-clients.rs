//! Opens N idle TCP connections to ADDR:PORT and holds them (for the relay benchmark's
//! memory figure): `idle-clients 127.0.0.1:8080 10000`. Prints `ready N` once all are
//! open, then waits until its standard input closes.

use std::io::Read;
use std::net::TcpStream;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(addr), Some(n)) = (
        args.get(1),
        args.get(2).and_then(|n| n.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: idle-clients ADDR:PORT N");
        std::process::exit(2);
    };
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        match TcpStream::connect(addr) {
            Ok(s) => held.push(s),
            Err(e) => {
                eprintln!("idle-clients: connection {i}: {e}");
                std::process::exit(1);
            }
        }
    }
    println!("ready {}", held.len());
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}
