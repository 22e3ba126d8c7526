//! A tiny hand-written HTTP/1.1 server on loopback for the failures a real
//! registry will not produce on demand (a connection closed mid-blob) and
//! for token auth. One thread per connection, one request per connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send only this many body bytes (after a full Content-Length), then
    /// close the connection.
    pub cut_after: Option<usize>,
    /// Announce this Content-Length instead of the body's.
    pub content_length: Option<u64>,
    /// After the body, keep sending filler until the client hangs up or
    /// this many bytes in all went out (a bound, so a client that never
    /// stops reading fails its test instead of hanging it).
    pub endless_up_to: Option<u64>,
    /// Body bytes (filler included) the server managed to send.
    pub sent: Option<Arc<AtomicU64>>,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
            cut_after: None,
            content_length: None,
            endless_up_to: None,
            sent: None,
        }
    }
    /// A body that never ends (up to `bound` bytes), announced as
    /// `content_length` bytes, or with no length at all (a body that ends
    /// with the connection); what went out is counted in `sent`.
    pub fn endless(
        mut self,
        content_length: Option<u64>,
        bound: u64,
        sent: &Arc<AtomicU64>,
    ) -> Reply {
        self.content_length = content_length;
        self.endless_up_to = Some(bound);
        self.sent = Some(sent.clone());
        self
    }
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }
}

pub struct FakeServer {
    pub addr: String,
    stop: Arc<AtomicBool>,
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

impl FakeServer {
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let handler = handler.clone();
                        std::thread::spawn(move || serve(stream, &*handler));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeServer { addr, stop }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(stream: TcpStream, handler: &Handler) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((n, v)) = h.trim_end().split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    let req = Request {
        method,
        path,
        headers,
    };
    // Drain a request body so the client is not blocked writing it.
    if let Some(len) = req
        .header("content-length")
        .and_then(|l| l.parse::<u64>().ok())
    {
        let _ = std::io::copy(&mut (&mut reader).take(len), &mut std::io::sink());
    }
    let reply = handler(&req);
    let mut out = stream;
    let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", reply.status);
    match (reply.content_length, reply.endless_up_to) {
        (Some(n), _) => head.push_str(&format!("Content-Length: {n}\r\n")),
        // No length: the body ends when the connection does.
        (None, Some(_)) => {}
        (None, None) => head.push_str(&format!("Content-Length: {}\r\n", reply.body.len())),
    }
    for (n, v) in &reply.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = out.write_all(head.as_bytes());
    if req.method != "HEAD" {
        let n = reply
            .cut_after
            .unwrap_or(reply.body.len())
            .min(reply.body.len());
        let _ = out.write_all(&reply.body[..n]);
        if let (Some(bound), Some(sent)) = (reply.endless_up_to, &reply.sent) {
            sent.store(n as u64, Ordering::SeqCst);
            // A client that stops reading without closing must not hold this thread forever.
            let _ = out.set_write_timeout(Some(Duration::from_secs(5)));
            let filler = vec![b'x'; 64 << 10];
            let mut total = n as u64;
            while total < bound {
                match out.write(&filler) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => {
                        total += k as u64;
                        sent.store(total, Ordering::SeqCst);
                    }
                }
            }
        }
    }
    let _ = out.flush();
    let _ = out.shutdown(std::net::Shutdown::Both);
}
