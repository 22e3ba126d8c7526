//! A tiny HTTP/1.1 keep-alive server and client for the drain tests: just enough HTTP to
//! exercise framing (Content-Length, chunked, HEAD, 100-continue, pipelining, Upgrade).
//!
//! The server answers every request with the body `<name> <path>`, so a client can tell
//! which backend served which request. Paths with special meaning:
//! - `/wait…`: the response waits until the server's gate is opened;
//! - `/chunked`: a chunked response, whose second chunk waits for the gate;
//! - `/eof…`: a response without a length, ended by closing the connection.
//!
//! A request with `Upgrade` gets 101 and the connection then echoes raw bytes.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::support::spawn_in;

/// Opened once by the test; responses that wait for it go on from then.
#[derive(Default)]
pub struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }

    fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
    }
}

pub struct HttpServer {
    pub port: u16,
    /// Requests received (heads read), all connections together.
    pub requests: Arc<AtomicUsize>,
    /// Paths of the requests received, in order.
    pub paths: Arc<Mutex<Vec<String>>>,
    pub gate: Arc<Gate>,
    listener: Arc<TcpListener>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// A server on 127.0.0.1:`port` (0: any free port) inside `netns` when given.
    pub fn start(netns: Option<&Path>, name: &str, port: u16) -> HttpServer {
        let (tx, rx) = mpsc::channel();
        let requests = Arc::new(AtomicUsize::new(0));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Gate::default());
        let shared = Arc::new(Shared {
            name: name.to_string(),
            requests: requests.clone(),
            paths: paths.clone(),
            gate: gate.clone(),
        });
        let thread = spawn_in(netns, move || {
            let listener = Arc::new(TcpListener::bind(("127.0.0.1", port)).expect("server bind"));
            tx.send(listener.clone()).unwrap();
            while let Ok((conn, _)) = listener.accept() {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || {
                        let _ = shared.serve(conn);
                    })
                    .expect("server thread");
            }
        });
        let listener = rx.recv().expect("server started");
        HttpServer {
            port: listener.local_addr().unwrap().port(),
            requests,
            paths,
            gate,
            listener,
            thread: Some(thread),
        }
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.gate.open();
        // SAFETY: plain syscall on a socket we hold; wakes the blocked accept(2).
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Shared {
    name: String,
    requests: Arc<AtomicUsize>,
    paths: Arc<Mutex<Vec<String>>>,
    gate: Arc<Gate>,
}

/// A request or response head: start line and headers (names lowercased).
struct Head {
    start: String,
    headers: Vec<(String, String)>,
}

impl Head {
    /// Reads a head; `Ok(None)` at a clean end of stream before it.
    fn read(r: &mut impl BufRead) -> io::Result<Option<Head>> {
        let mut start = String::new();
        if r.read_line(&mut start)? == 0 {
            return Ok(None);
        }
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof in head"));
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| io::Error::other(format!("bad header {line:?}")))?;
            headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
        Ok(Some(Head {
            start: start.trim_end().to_string(),
            headers,
        }))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    /// Reads the body this head announces: by length or chunked; otherwise none, or for a
    /// response (`until_close`) everything up to the end of the connection.
    fn read_body(&self, r: &mut impl BufRead, until_close: bool) -> io::Result<Vec<u8>> {
        if self.has_token("transfer-encoding", "chunked") {
            let mut body = Vec::new();
            loop {
                let mut size = String::new();
                r.read_line(&mut size)?;
                let size = size.trim_end().split(';').next().unwrap_or("");
                let n = usize::from_str_radix(size, 16)
                    .map_err(|_| io::Error::other(format!("bad chunk size {size:?}")))?;
                if n == 0 {
                    // Trailer section up to its empty line.
                    loop {
                        let mut line = String::new();
                        r.read_line(&mut line)?;
                        if line.trim_end().is_empty() {
                            return Ok(body);
                        }
                    }
                }
                let at = body.len();
                body.resize(at + n, 0);
                r.read_exact(&mut body[at..])?;
                let mut crlf = [0u8; 2];
                r.read_exact(&mut crlf)?;
            }
        }
        let len = match self.get("content-length") {
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| io::Error::other("bad length"))?,
            None if until_close => {
                let mut body = Vec::new();
                r.read_to_end(&mut body)?;
                return Ok(body);
            }
            None => 0,
        };
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)?;
        Ok(body)
    }
}

impl Shared {
    fn serve(&self, conn: TcpStream) -> io::Result<()> {
        let mut r = BufReader::new(conn.try_clone()?);
        let mut w = conn;
        while let Some(head) = Head::read(&mut r)? {
            self.requests.fetch_add(1, Ordering::SeqCst);
            let mut parts = head.start.split(' ');
            let method = parts.next().unwrap_or("").to_string();
            let path = parts.next().unwrap_or("").to_string();
            self.paths.lock().unwrap().push(path.clone());
            if head.get("expect") == Some("100-continue") {
                w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            }
            let body = head.read_body(&mut r, false)?;
            if path.starts_with("/wait") {
                self.gate.wait();
            }
            if head.get("upgrade").is_some() {
                w.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")?;
                // Leftover bytes the reader already took belong to the new protocol.
                let early = r.buffer().to_vec();
                w.write_all(&early)?;
                r.consume(early.len());
                let mut buf = [0u8; 4096];
                loop {
                    let n = r.get_mut().read(&mut buf)?;
                    if n == 0 {
                        return Ok(());
                    }
                    w.write_all(&buf[..n])?;
                }
            }
            let text = format!("{} {path}", self.name);
            let close = head.has_token("connection", "close");
            let conn_header = if close { "Connection: close\r\n" } else { "" };
            if path.starts_with("/eof") {
                // HTTP/1.0 style: no length, the end of the connection ends the body.
                write!(w, "HTTP/1.1 200 OK\r\n\r\n{text}")?;
                return Ok(());
            }
            if path == "/chunked" {
                write!(
                    w,
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n{conn_header}\r\n"
                )?;
                write!(w, "{:x};part=1\r\n{text}\r\n", text.len())?;
                w.flush()?;
                self.gate.wait();
                write!(
                    w,
                    "{:x}\r\n {}\r\n0\r\nX-Sent: {}\r\n\r\n",
                    body.len() + 1,
                    String::from_utf8_lossy(&body),
                    body.len()
                )?;
            } else {
                write!(
                    w,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nKeep-Alive: timeout=60\r\n{conn_header}\r\n",
                    text.len()
                )?;
                if method != "HEAD" {
                    w.write_all(text.as_bytes())?;
                }
            }
            if close {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// A response as a client sees it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
    /// The response said `Connection: close`.
    pub close: bool,
    pub chunked: bool,
}

/// One kept-alive client connection.
pub struct HttpClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl HttpClient {
    pub fn connect(addr: SocketAddr) -> io::Result<HttpClient> {
        let conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(HttpClient {
            reader: BufReader::new(conn.try_clone()?),
            writer: conn,
        })
    }

    pub fn send(&mut self, raw: &str) -> io::Result<()> {
        self.writer.write_all(raw.as_bytes())
    }

    /// Reads the next response (interim 1xx included); `head` when it answers a HEAD.
    pub fn response(&mut self, head: bool) -> io::Result<Response> {
        let h = Head::read(&mut self.reader)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed, no response",
            )
        })?;
        let status = h
            .start
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {:?}", h.start)))?;
        let chunked = h.has_token("transfer-encoding", "chunked");
        let body = if head || status < 200 || status == 204 || status == 304 {
            Vec::new()
        } else {
            h.read_body(&mut self.reader, true)?
        };
        Ok(Response {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            close: h.has_token("connection", "close"),
            chunked,
        })
    }

    /// `GET path` and its response.
    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.send(&format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"))?;
        self.response(false)
    }

    /// The raw stream, for upgraded connections.
    pub fn stream(&mut self) -> (&mut BufReader<TcpStream>, &mut TcpStream) {
        (&mut self.reader, &mut self.writer)
    }

    /// Waits for the server to end the connection: end of stream (or a reset) with no data.
    /// A read timeout fails: the connection is still open.
    pub fn expect_closed(mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("the connection was not closed: {e}"),
        }
        assert!(
            rest.is_empty(),
            "data after the end: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}
