//! A tiny HTTP backend for the README's main job: answers every request on the given
//! `ADDR:PORT`s with `200 OK`, a `Server: demo-backend` header and a line naming the
//! address that answered, and prints each request head it receives to stderr. It stops
//! when its standard input closes (the script that started it ends it that way, or by
//! its pid).

use std::io::{Read, Write};
use std::net::TcpListener;

fn main() {
    let addrs: Vec<String> = std::env::args().skip(1).collect();
    for a in addrs {
        let l = match TcpListener::bind(&a) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("demo-backend: cannot listen on {a}: {e}");
                std::process::exit(1);
            }
        };
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let a = a.clone();
                std::thread::spawn(move || serve(s, &a));
            }
        });
    }
    // Run until stdin closes.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

fn serve(mut s: std::net::TcpStream, addr: &str) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            if !head.contains("User-Agent: OpenBSD relayd") {
                eprintln!("demo-backend {addr} received:\n{head}\n");
            }
            let body = format!("hello from {addr}\n");
            let mut reply = format!(
                "HTTP/1.1 200 OK\r\nServer: demo-backend\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            // A response to HEAD has no body.
            let head_only = head.starts_with("HEAD ");
            if !head_only {
                reply.push_str(&body);
            }
            if s.write_all(reply.as_bytes()).is_err() || head_only {
                return;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
