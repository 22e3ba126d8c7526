//! HTTP/1.x message boundaries on a relayed connection.
//!
//! The proxy does not interpret HTTP; it only needs to know where each request and response
//! begins and ends, so that during a drain it can end a kept-alive connection *between*
//! exchanges: mark the last response with `Connection: close` and close after it, instead of
//! cutting a request mid-way. [`Tracker`] follows both directions of one connection from the
//! bytes alone (RFC 9112 framing): requests framed by Content-Length, chunked or no body;
//! responses framed by Content-Length, chunked or the end of the connection, with the
//! bodiless cases (HEAD, 1xx, 204, 304); interim 100 Continue before the real response;
//! pipelined requests matched to responses in order; and `Upgrade`/CONNECT, after which the
//! connection is opaque bytes.
//!
//! Anything it cannot follow is [`Malformed`]: the caller then stops tracking and relays the
//! rest of the connection as plain bytes. Tracking never rejects traffic: the backend, not
//! the proxy, decides what a valid request is.

use std::collections::VecDeque;

/// The longest message head tracked; a longer one makes the connection opaque. Servers
/// commonly refuse heads over 8–16 KiB, so a valid exchange never reaches this.
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// More pipelined requests than this waiting for their responses pauses reading the client:
/// the queue of what each awaits stays bounded whatever the client sends.
const MAX_PENDING: usize = 256;

/// Bytes the tracker cannot follow as HTTP/1.x.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not HTTP/1.x: {0}")]
pub(crate) struct Malformed(pub(crate) &'static str);

/// What the first bytes a client sent say about its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sniff {
    Http,
    NotHttp,
    /// A prefix of a request line: wait for more.
    NeedMore,
}

/// Whether `data` begins with an HTTP/1.x request line (`METHOD SP target SP HTTP/1.x`).
pub(crate) fn sniff(data: &[u8]) -> Sniff {
    let data = skip_empty_lines(data);
    if data.is_empty() {
        return Sniff::NeedMore;
    }
    let line_end = data.iter().position(|&b| b == b'\n');
    let line = match line_end {
        Some(end) => trim_cr(&data[..end]),
        None if data.len() >= MAX_HEAD => return Sniff::NotHttp,
        None => trim_cr(data),
    };
    let mut parts = line.splitn(3, |&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    // Methods are tokens, but every registered one is a short upper-case word: requiring
    // that decides at once for most other protocols, even after a single byte ("p").
    if method.len() > MAX_METHOD || !method.iter().all(|&b| is_method_char(b)) {
        return Sniff::NotHttp;
    }
    let Some(target) = parts.next() else {
        return if line_end.is_none() && !method.is_empty() {
            Sniff::NeedMore
        } else {
            Sniff::NotHttp
        };
    };
    if method.is_empty() || target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Sniff::NotHttp;
    }
    let Some(version) = parts.next() else {
        return if line_end.is_none() {
            Sniff::NeedMore
        } else {
            Sniff::NotHttp
        };
    };
    const V: &[u8] = b"HTTP/1.";
    let complete = line_end.is_some();
    let n = version.len().min(V.len());
    if version[..n] != V[..n] {
        return Sniff::NotHttp;
    }
    match (version.len(), complete) {
        (l, false) if l <= V.len() => Sniff::NeedMore,
        (l, _) if l == V.len() + 1 && version[V.len()].is_ascii_digit() => {
            if complete {
                Sniff::Http
            } else {
                Sniff::NeedMore
            }
        }
        _ => Sniff::NotHttp,
    }
}

/// One step of a direction: the caller forwards `len` bytes from the front of what it passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// A complete message head of `len` bytes; `end` when the message has no body.
    Head { len: usize, kind: Head, end: bool },
    /// Body bytes, or empty lines between messages; `end` when they complete the message.
    Bytes { len: usize, end: bool },
    /// The head so far is incomplete: more bytes are needed.
    NeedMore,
    /// Requests only: the next request must wait for responses (an Upgrade or CONNECT whose
    /// answer decides what follows, or too many pipelined requests).
    Wait,
    /// The connection is opaque from here on (after an upgrade): forward everything.
    Opaque,
}

/// What a head is, for deciding whether to mark it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Head {
    Request,
    /// 1xx other than 101: another response follows for the same request.
    Interim,
    /// The response that completes an exchange.
    Final,
    /// 101 Switching Protocols, or a 2xx to CONNECT: the connection becomes a tunnel.
    Switch,
}

/// What a response needs to know about the request it answers.
#[derive(Debug, Clone, Copy)]
struct Pending {
    head: bool,
    connect: bool,
    upgrade: bool,
}

impl Pending {
    /// Whether the answer decides if the connection stays HTTP.
    fn tunnel(&self) -> bool {
        self.connect || self.upgrade
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Side {
    /// Between messages: the next bytes are a head (or empty lines).
    Idle,
    Body(Body),
    /// Requests only: an Upgrade/CONNECT request went out; wait for its answer.
    Held,
    Opaque,
}

/// Both directions of one HTTP/1.x connection.
#[derive(Debug)]
pub(crate) struct Tracker {
    request: Side,
    response: Side,
    /// Requests sent whose final response has not begun, oldest first.
    pending: VecDeque<Pending>,
}

impl Tracker {
    pub(crate) fn new() -> Tracker {
        Tracker {
            request: Side::Idle,
            response: Side::Idle,
            pending: VecDeque::new(),
        }
    }

    /// Requests forwarded whose final response has not started yet.
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// No request or response is under way, none is awaited: a boundary in both directions.
    pub(crate) fn idle(&self) -> bool {
        self.request == Side::Idle && self.response == Side::Idle && self.pending.is_empty()
    }

    /// Between two requests (nothing of a request is partly forwarded).
    pub(crate) fn request_boundary(&self) -> bool {
        self.request == Side::Idle
    }

    pub(crate) fn opaque(&self) -> bool {
        self.response == Side::Opaque
    }

    /// Parses the client's bytes at the front of `data`.
    pub(crate) fn client(&mut self, data: &[u8]) -> Result<Step, Malformed> {
        match &mut self.request {
            Side::Opaque => Ok(Step::Opaque),
            Side::Held => Ok(Step::Wait),
            Side::Body(body) => {
                let (len, end) = body.feed(data)?;
                if end {
                    self.request = if self.pending.back().is_some_and(Pending::tunnel) {
                        Side::Held
                    } else {
                        Side::Idle
                    };
                }
                Ok(Step::Bytes { len, end })
            }
            Side::Idle => {
                let blank = data.len() - skip_empty_lines(data).len();
                if blank > 0 {
                    return Ok(Step::Bytes {
                        len: blank,
                        end: false,
                    });
                }
                if self.pending.len() >= MAX_PENDING {
                    return Ok(Step::Wait);
                }
                if sniff(data) == Sniff::NotHttp {
                    return Err(Malformed("bad request line"));
                }
                let Some(len) = head_end(data)? else {
                    return Ok(Step::NeedMore);
                };
                let req = RequestHead::parse(&data[..len])?;
                // An Upgrade or CONNECT decides what follows only with its response; nothing
                // after it is HTTP until then.
                let pending = Pending {
                    head: req.head,
                    connect: req.connect,
                    upgrade: req.upgrade,
                };
                let tunnel = pending.tunnel();
                self.pending.push_back(pending);
                let end = req.body == Body::Length(0);
                self.request = match (end, tunnel) {
                    (true, true) => Side::Held,
                    (true, false) => Side::Idle,
                    (false, _) => Side::Body(req.body),
                };
                Ok(Step::Head {
                    len,
                    kind: Head::Request,
                    end,
                })
            }
        }
    }

    /// Parses the server's bytes at the front of `data`.
    pub(crate) fn server(&mut self, data: &[u8]) -> Result<Step, Malformed> {
        match &mut self.response {
            Side::Opaque => Ok(Step::Opaque),
            Side::Held => Err(Malformed("response side held")),
            Side::Body(body) => {
                let (len, end) = body.feed(data)?;
                if end {
                    self.response = Side::Idle;
                }
                Ok(Step::Bytes { len, end })
            }
            Side::Idle => {
                // Checked before waiting for a whole head: a server that speaks first is
                // not HTTP, and its greeting may never look like a head.
                let Some(req) = self.pending.front().copied() else {
                    return Err(Malformed("a response to no request"));
                };
                let Some(len) = head_end(data)? else {
                    return Ok(Step::NeedMore);
                };
                let resp = ResponseHead::parse(&data[..len])?;
                if resp.status < 200 && resp.status != 101 {
                    return Ok(Step::Head {
                        len,
                        kind: Head::Interim,
                        end: true,
                    });
                }
                self.pending.pop_front();
                if resp.status == 101 && !req.upgrade {
                    return Err(Malformed("101 to a request that asked for no upgrade"));
                }
                if resp.status == 101 || (req.connect && (200..300).contains(&resp.status)) {
                    self.request = Side::Opaque;
                    self.response = Side::Opaque;
                    return Ok(Step::Head {
                        len,
                        kind: Head::Switch,
                        end: true,
                    });
                }
                if self.request == Side::Held {
                    // The upgrade was declined: the connection carries HTTP on.
                    self.request = Side::Idle;
                }
                let body = if req.head || resp.status == 204 || resp.status == 304 {
                    Body::Length(0)
                } else {
                    resp.body
                };
                let end = body == Body::Length(0);
                if !end {
                    self.response = Side::Body(body);
                }
                Ok(Step::Head {
                    len,
                    kind: Head::Final,
                    end,
                })
            }
        }
    }

    /// The server closed its side: ends a response delimited by the close.
    pub(crate) fn server_closed(&mut self) {
        if self.response == Side::Body(Body::Close) {
            self.response = Side::Idle;
        }
    }
}

/// How a message body is delimited, and how much of it is left.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    Length(u64),
    Chunked(Chunk),
    /// Until the server closes the connection (responses only).
    Close,
}

/// Where a chunked body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// In a chunk-size line: its value so far, how many hex digits, whether past them.
    Size {
        value: u64,
        digits: u8,
        ext: bool,
    },
    SizeLf {
        value: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// In the trailer section, at the start of a line or within one.
    Trailer {
        line_start: bool,
    },
    TrailerLf,
}

const CHUNK_START: Chunk = Chunk::Size {
    value: 0,
    digits: 0,
    ext: false,
};

impl Body {
    /// Consumes body bytes from the front of `data`: how many, and whether the body ended.
    fn feed(&mut self, data: &[u8]) -> Result<(usize, bool), Malformed> {
        match self {
            Body::Close => Ok((data.len(), false)),
            Body::Length(left) => {
                let n = (*left).min(data.len() as u64);
                *left -= n;
                Ok((n as usize, *left == 0))
            }
            Body::Chunked(chunk) => {
                let mut i = 0;
                while i < data.len() {
                    let b = data[i];
                    *chunk = match *chunk {
                        Chunk::Data(left) => {
                            let n = left.min((data.len() - i) as u64);
                            i += n as usize;
                            if left == n {
                                Chunk::DataCr
                            } else {
                                Chunk::Data(left - n)
                            }
                        }
                        state => {
                            i += 1;
                            match next_chunk_state(state, b)? {
                                Some(next) => next,
                                None => return Ok((i, true)),
                            }
                        }
                    };
                }
                Ok((i, false))
            }
        }
    }
}

/// The chunked-body state after byte `b`; `None` when `b` ended the body.
fn next_chunk_state(state: Chunk, b: u8) -> Result<Option<Chunk>, Malformed> {
    let size_done = |value: u64| {
        if value == 0 {
            Chunk::Trailer { line_start: true }
        } else {
            Chunk::Data(value)
        }
    };
    Ok(Some(match state {
        Chunk::Size { value, digits, ext } => match b {
            b'\r' if digits > 0 => Chunk::SizeLf { value },
            b'\n' if digits > 0 => size_done(value),
            _ if ext => state,
            b';' | b' ' | b'\t' if digits > 0 => Chunk::Size {
                value,
                digits,
                ext: true,
            },
            _ => {
                let d = (b as char)
                    .to_digit(16)
                    .ok_or(Malformed("bad chunk size"))?;
                if digits >= 15 {
                    return Err(Malformed("chunk size too large"));
                }
                Chunk::Size {
                    value: value * 16 + d as u64,
                    digits: digits + 1,
                    ext: false,
                }
            }
        },
        Chunk::SizeLf { value } => match b {
            b'\n' => size_done(value),
            _ => return Err(Malformed("bad chunk size line")),
        },
        Chunk::DataCr => match b {
            b'\r' => Chunk::DataLf,
            b'\n' => CHUNK_START,
            _ => return Err(Malformed("chunk data overran its size")),
        },
        Chunk::DataLf => match b {
            b'\n' => CHUNK_START,
            _ => return Err(Malformed("chunk data overran its size")),
        },
        Chunk::Trailer { line_start: true } => match b {
            b'\r' => Chunk::TrailerLf,
            b'\n' => return Ok(None),
            _ => Chunk::Trailer { line_start: false },
        },
        Chunk::Trailer { line_start: false } => match b {
            b'\n' => Chunk::Trailer { line_start: true },
            _ => state,
        },
        Chunk::TrailerLf => match b {
            b'\n' => return Ok(None),
            _ => return Err(Malformed("bad trailer section")),
        },
        Chunk::Data(_) => unreachable!("data is consumed in bulk by the caller"),
    }))
}

/// The length of the head at the front of `data` (through its empty line), if complete.
fn head_end(data: &[u8]) -> Result<Option<usize>, Malformed> {
    let window = &data[..data.len().min(MAX_HEAD)];
    for (i, _) in window.iter().enumerate().filter(|(_, &b)| b == b'\n') {
        match &window[i + 1..] {
            [b'\n', ..] => return Ok(Some(i + 2)),
            [b'\r', b'\n', ..] => return Ok(Some(i + 3)),
            _ => {}
        }
    }
    if data.len() >= MAX_HEAD {
        Err(Malformed("head too long"))
    } else {
        Ok(None)
    }
}

fn skip_empty_lines(data: &[u8]) -> &[u8] {
    let n = data
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(data.len());
    &data[n..]
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The longest method recognised (`MKCALENDAR`, `UPDATEREDIRECTREF` are among the longest).
const MAX_METHOD: usize = 20;

fn is_method_char(b: u8) -> bool {
    b.is_ascii_uppercase() || b == b'-' || b == b'_'
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The header lines of a head (after its start line), as (name, value) with the value
/// trimmed.
fn header_lines(head: &[u8]) -> impl Iterator<Item = Result<(&[u8], &[u8]), Malformed>> {
    head.split(|&b| b == b'\n')
        .skip(1)
        .map(trim_cr)
        .take_while(|l| !l.is_empty())
        .map(|line| {
            if line[0] == b' ' || line[0] == b'\t' {
                return Err(Malformed("folded header line"));
            }
            let colon = line
                .iter()
                .position(|&b| b == b':')
                .ok_or(Malformed("header line without a colon"))?;
            let name = &line[..colon];
            if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
                return Err(Malformed("bad header name"));
            }
            Ok((name, line[colon + 1..].trim_ascii()))
        })
}

fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// The framing headers of a message.
#[derive(Default)]
struct Framing {
    length: Option<u64>,
    /// Transfer-Encoding given: whether its last coding is chunked.
    chunked: Option<bool>,
    upgrade_header: bool,
    connection_upgrade: bool,
}

impl Framing {
    fn parse(head: &[u8]) -> Result<Framing, Malformed> {
        let mut f = Framing::default();
        for line in header_lines(head) {
            let (name, value) = line?;
            if name.eq_ignore_ascii_case(b"content-length") {
                for item in list_items(value) {
                    let n = std::str::from_utf8(item)
                        .ok()
                        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
                        .and_then(|s| s.parse::<u64>().ok())
                        .ok_or(Malformed("bad Content-Length"))?;
                    if f.length.is_some_and(|m| m != n) {
                        return Err(Malformed("conflicting Content-Length"));
                    }
                    f.length = Some(n);
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                if let Some(last) = list_items(value).last() {
                    f.chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
                }
            } else if name.eq_ignore_ascii_case(b"connection") {
                f.connection_upgrade |=
                    list_items(value).any(|t| t.eq_ignore_ascii_case(b"upgrade"));
            } else if name.eq_ignore_ascii_case(b"upgrade") {
                f.upgrade_header = true;
            }
        }
        Ok(f)
    }
}

struct RequestHead {
    head: bool,
    connect: bool,
    upgrade: bool,
    body: Body,
}

impl RequestHead {
    fn parse(head: &[u8]) -> Result<RequestHead, Malformed> {
        if sniff(head) != Sniff::Http {
            return Err(Malformed("bad request line"));
        }
        let method = head.split(|&b| b == b' ').next().unwrap_or_default();
        let f = Framing::parse(head)?;
        let body = match (f.chunked, f.length) {
            (Some(true), _) => Body::Chunked(CHUNK_START),
            (Some(false), _) => return Err(Malformed("request body of unknown length")),
            (None, Some(n)) => Body::Length(n),
            (None, None) => Body::Length(0),
        };
        // Expect: 100-continue needs nothing here: the body follows the head either way,
        // once the client has its 100 (an interim response) or has stopped waiting for it.
        Ok(RequestHead {
            head: method == b"HEAD",
            connect: method == b"CONNECT",
            upgrade: f.upgrade_header && f.connection_upgrade,
            body,
        })
    }
}

struct ResponseHead {
    status: u16,
    body: Body,
}

impl ResponseHead {
    fn parse(head: &[u8]) -> Result<ResponseHead, Malformed> {
        let line = trim_cr(head.split(|&b| b == b'\n').next().unwrap_or_default());
        let rest = line
            .strip_prefix(b"HTTP/1.")
            .ok_or(Malformed("bad status line"))?;
        let status = match rest {
            [minor, b' ', a, b, c, tail @ ..]
                if minor.is_ascii_digit()
                    && [a, b, c].iter().all(|d| d.is_ascii_digit())
                    && (tail.is_empty() || tail[0] == b' ') =>
            {
                (*a - b'0') as u16 * 100 + (*b - b'0') as u16 * 10 + (*c - b'0') as u16
            }
            _ => return Err(Malformed("bad status line")),
        };
        let f = Framing::parse(head)?;
        let body = match (f.chunked, f.length) {
            (Some(true), _) => Body::Chunked(CHUNK_START),
            (Some(false), _) => Body::Close,
            (None, Some(n)) => Body::Length(n),
            (None, None) => Body::Close,
        };
        Ok(ResponseHead { status, body })
    }
}

/// `head` with `Connection: close` as its only connection option: the client then ends the
/// connection after this response. Keep-Alive parameters go too, they no longer apply.
pub(crate) fn with_connection_close(head: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() + 19);
    let mut lines = head.split_inclusive(|&b| b == b'\n');
    if let Some(start) = lines.next() {
        out.extend_from_slice(start);
    }
    for line in lines {
        let bare = trim_cr(line.strip_suffix(b"\n").unwrap_or(line));
        if bare.is_empty() {
            out.extend_from_slice(b"Connection: close\r\n");
            out.extend_from_slice(line);
            break;
        }
        let name = bare.split(|&b| b == b':').next().unwrap_or_default();
        if name.eq_ignore_ascii_case(b"connection") || name.eq_ignore_ascii_case(b"keep-alive") {
            continue;
        }
        out.extend_from_slice(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `data` to one side `piece` bytes at a time, the way a relay does (keeping what a
    /// step did not consume); returns the offsets where messages ended, and the last step.
    fn drive(t: &mut Tracker, server: bool, data: &[u8], piece: usize) -> (Vec<usize>, Step) {
        let (mut pos, mut avail, mut ends) = (0, 0, Vec::new());
        let mut last = Step::NeedMore;
        while pos < data.len() {
            if avail == pos {
                avail = (avail + piece).min(data.len());
            }
            let chunk = &data[pos..avail];
            last = if server {
                t.server(chunk)
            } else {
                t.client(chunk)
            }
            .unwrap();
            match last {
                Step::Head { len, end, .. } | Step::Bytes { len, end } => {
                    pos += len;
                    if end {
                        ends.push(pos);
                    }
                }
                Step::NeedMore if avail < data.len() => avail = (avail + piece).min(data.len()),
                Step::NeedMore | Step::Wait | Step::Opaque => break,
            }
        }
        (ends, last)
    }

    /// Message ends fed whole, then fed byte by byte: splitting must not change them.
    fn ends(t: impl Fn() -> Tracker, server: bool, prelude: &[u8], data: &[u8]) -> Vec<usize> {
        let mut results = Vec::new();
        for piece in [data.len().max(1), 1, 7] {
            let mut tracker = t();
            if !prelude.is_empty() {
                drive(&mut tracker, false, prelude, prelude.len());
            }
            results.push(drive(&mut tracker, server, data, piece).0);
        }
        assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
        results.remove(0)
    }

    fn requests(t: &mut Tracker, data: &[u8]) -> Vec<usize> {
        drive(t, false, data, data.len()).0
    }

    #[test]
    fn requests_framed_by_length_chunked_or_nothing() {
        let post = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        let get = b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n";
        let put = b"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n";
        let delete = b"DELETE /d HTTP/1.0\r\n\r\n";
        let data = [&post[..], get, put, delete].concat();
        let first = post.len();
        let second = first + get.len();
        let third = second + put.len();
        assert_eq!(
            ends(Tracker::new, false, b"", &data),
            vec![first, second, third, data.len()]
        );
        let mut t = Tracker::new();
        requests(&mut t, &data);
        assert_eq!(t.pending(), 4);
        assert!(t.request_boundary());
        assert!(!t.idle(), "four responses are awaited");
    }

    #[test]
    fn partial_request_is_not_a_boundary() {
        let mut t = Tracker::new();
        let step = t
            .client(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n")
            .unwrap();
        assert!(matches!(step, Step::Head { end: false, .. }));
        assert!(!t.request_boundary());
        assert_eq!(
            t.client(b"half").unwrap(),
            Step::Bytes { len: 4, end: false }
        );
        assert!(!t.request_boundary());
        assert_eq!(
            t.client(b"of it\r\nGET").unwrap(),
            Step::Bytes { len: 6, end: true }
        );
        assert!(t.request_boundary());
    }

    #[test]
    fn responses_framed_by_length_chunked_and_close() {
        let reqs = b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n";
        let length = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
3\r\nabc\r\n0\r\n\r\n";
        let close = b"HTTP/1.0 200 OK\r\n\r\nuntil the server closes";
        let data = [&length[..], chunked, close].concat();
        let first = length.len();
        let second = first + chunked.len();
        assert_eq!(
            ends(Tracker::new, true, reqs, &data),
            vec![first, second],
            "the third response has no length: it ends only with the connection"
        );
        let mut t = Tracker::new();
        requests(&mut t, reqs);
        drive(&mut t, true, &data, data.len());
        assert!(!t.idle());
        t.server_closed();
        assert!(t.idle());
    }

    #[test]
    fn head_204_and_304_have_no_body_whatever_their_headers_say() {
        let reqs = b"HEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
        let no_content = b"HTTP/1.1 204 No Content\r\n\r\n";
        let not_modified = b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n";
        let last = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let data = [&head[..], no_content, not_modified, last].concat();
        let a = head.len();
        let b = a + no_content.len();
        let c = b + not_modified.len();
        assert_eq!(
            ends(Tracker::new, true, reqs, &data),
            vec![a, b, c, data.len()]
        );
    }

    #[test]
    fn expect_100_continue_is_answered_by_100_then_the_response() {
        let mut t = Tracker::new();
        let head = b"PUT /f HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
        assert!(matches!(
            t.client(head).unwrap(),
            Step::Head { end: false, .. }
        ));
        let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
        assert_eq!(
            t.server(interim).unwrap(),
            Step::Head {
                len: interim.len(),
                kind: Head::Interim,
                end: true
            }
        );
        assert_eq!(t.pending(), 1, "the 100 is not the answer");
        assert_eq!(
            t.client(b"data").unwrap(),
            Step::Bytes { len: 4, end: true }
        );
        let fin = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            t.server(fin).unwrap(),
            Step::Head {
                len: fin.len(),
                kind: Head::Final,
                end: true
            }
        );
        assert!(t.idle());
    }

    #[test]
    fn pipelined_responses_match_requests_in_order() {
        let mut t = Tracker::new();
        // The second request is a HEAD: its response's Content-Length announces no body.
        let reqs = b"GET /1 HTTP/1.1\r\n\r\nHEAD /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n";
        assert_eq!(requests(&mut t, reqs).len(), 3);
        assert_eq!(t.pending(), 3);
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        let data = [&r[..], b"first", r, r, b"third"].concat();
        let (ends, _) = drive(&mut t, true, &data, 3);
        assert_eq!(ends, vec![r.len() + 5, 2 * r.len() + 5, data.len()]);
        assert!(t.idle());
    }

    #[test]
    fn upgrade_makes_the_connection_opaque_after_101() {
        let mut t = Tracker::new();
        let req =
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n";
        assert!(matches!(
            t.client(req).unwrap(),
            Step::Head { end: true, .. }
        ));
        // Whatever the client sends next waits for the answer.
        assert_eq!(t.client(b"\x81\x05hello").unwrap(), Step::Wait);
        let switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        assert_eq!(
            t.server(switch).unwrap(),
            Step::Head {
                len: switch.len(),
                kind: Head::Switch,
                end: true
            }
        );
        assert!(t.opaque());
        assert_eq!(t.client(b"\x81\x05hello").unwrap(), Step::Opaque);
        assert_eq!(t.server(b"HTTP/1.1 200 OK\r\n\r\n").unwrap(), Step::Opaque);
        assert!(!t.idle());
    }

    #[test]
    fn declined_upgrade_and_connect_tunnels() {
        let mut t = Tracker::new();
        let req = b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n";
        t.client(req).unwrap();
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(
            t.server(ok).unwrap(),
            Step::Head {
                kind: Head::Final,
                ..
            }
        ));
        assert!(!t.opaque());
        assert!(matches!(
            t.client(b"GET / HTTP/1.1\r\n\r\n").unwrap(),
            Step::Head { .. }
        ));

        let mut t = Tracker::new();
        t.client(b"CONNECT db:5432 HTTP/1.1\r\n\r\n").unwrap();
        let ok = b"HTTP/1.1 200 Connection established\r\n\r\n";
        assert!(matches!(
            t.server(ok).unwrap(),
            Step::Head {
                kind: Head::Switch,
                ..
            }
        ));
        assert!(t.opaque());
    }

    #[test]
    fn what_cannot_be_followed_is_malformed() {
        let bad_requests: [&[u8]; 4] = [
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"GET / HTTP/1.1\r\n folded\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        ];
        for req in bad_requests {
            assert!(Tracker::new().client(req).is_err(), "{req:?}");
        }
        let mut t = Tracker::new();
        assert!(t.server(b"HTTP/1.1 200 OK\r\n\r\n").is_err(), "no request");
        assert!(
            Tracker::new().server(b"A\n").is_err(),
            "a server that speaks first"
        );
        assert!(Tracker::new().client(b"ping\n").is_err(), "no request line");
        t.client(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap();
        assert!(t.client(b"zz\r\n").is_err(), "bad chunk size");
        let mut t = Tracker::new();
        t.client(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        assert!(
            t.server(b"HTTP/1.1 101 Switching\r\n\r\n").is_err(),
            "unasked upgrade"
        );
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.resize(MAX_HEAD + 1, b'a');
        assert!(Tracker::new().client(&huge).is_err(), "head too long");
    }

    #[test]
    fn sniffing_request_lines() {
        assert_eq!(sniff(b"GET / HTTP/1.1\r\nHost: x\r\n"), Sniff::Http);
        assert_eq!(sniff(b"\r\nOPTIONS * HTTP/1.0\n"), Sniff::Http);
        for prefix in [
            &b""[..],
            b"G",
            b"GET",
            b"GET ",
            b"GET /x",
            b"GET /x HTTP/1",
            b"GET /x HTTP/1.1",
        ] {
            assert_eq!(sniff(prefix), Sniff::NeedMore, "{prefix:?}");
        }
        let not_http: [&[u8]; 9] = [
            b"p",
            b"ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ",
            b"get / HTTP/1.1\r\n",
            b"ping\n",
            b"\x16\x03\x01\x02\x00",
            b"SSH-2.0-OpenSSH_9.2\r\n",
            b"GET / HTTP/2.0\r\n",
            b"PRI * HTTP/2.0\r\n",
            b"*1\r\n$4\r\nPING\r\n",
        ];
        for data in not_http {
            assert_eq!(sniff(data), Sniff::NotHttp, "{data:?}");
        }
    }

    #[test]
    fn connection_close_replaces_the_connection_options() {
        let head = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(
            with_connection_close(head),
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n".to_vec()
        );
        let bare = b"HTTP/1.1 204 No Content\n\n";
        assert_eq!(
            with_connection_close(bare),
            b"HTTP/1.1 204 No Content\nConnection: close\r\n\n".to_vec()
        );
    }
}
