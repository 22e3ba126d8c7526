//! A small HTTP/1.1 server on 127.0.0.1 for the tests: fixed responses by
//! path, optionally lying about the length (to cut a download short).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct Reply {
    pub body: Vec<u8>,
    /// Announce this many bytes but send `body` only, then close.
    pub claimed_len: Option<usize>,
    /// More header lines (`Last-Modified: …`).
    pub headers: Vec<String>,
}

pub struct Server {
    pub base: String,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let shared = routes.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let routes = shared.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut request = String::new();
                    if reader.read_line(&mut request).is_err() {
                        return;
                    }
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                    }
                    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let reply = routes.lock().unwrap().get(&path).cloned();
                    let _ = match reply {
                        Some(r) => {
                            let len = r.claimed_len.unwrap_or(r.body.len());
                            let extra: String = r.headers.iter().map(|h| format!("{h}\r\n")).collect();
                            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n{extra}Connection: close\r\n\r\n");
                            stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&r.body))
                        }
                        None => stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                    };
                });
            }
        });
        Server { base, routes }
    }

    pub fn put(&self, path: &str, body: impl Into<Vec<u8>>) {
        self.put_with_headers(path, body, &[]);
    }

    pub fn put_with_headers(&self, path: &str, body: impl Into<Vec<u8>>, headers: &[&str]) {
        self.routes.lock().unwrap().insert(
            path.to_string(),
            Reply {
                body: body.into(),
                claimed_len: None,
                headers: headers.iter().map(|h| h.to_string()).collect(),
            },
        );
    }

    pub fn put_truncated(&self, path: &str, body: impl Into<Vec<u8>>, claimed_len: usize) {
        self.routes.lock().unwrap().insert(
            path.to_string(),
            Reply {
                body: body.into(),
                claimed_len: Some(claimed_len),
                headers: Vec::new(),
            },
        );
    }
}

/// A gzipped tar of `(path, mode, content)` entries.
pub fn tgz(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (path, mode, content) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(*mode);
        h.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut h, path, *content).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}
