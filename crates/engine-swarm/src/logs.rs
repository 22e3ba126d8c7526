//! `logs`: every task's output, read through the manager (which gets it
//! from each task's node), one stream per service. With `details` each
//! line names its task, so while following, the tasks a roll starts show
//! up as they come, named `service.N@node` like `ps` names them.
//!
//! bollard has no call for service logs, so this is one plain HTTP/1.0
//! request over the manager's socket: to an HTTP/1.0 request the daemon
//! answers with the raw multiplexed stream, unchunked, until it closes.

use crate::{Result, SwarmBackend, PROXY_SERVICE};
use berth_engine::backend::{LogLine, LogOptions};
use berth_engine::BackendError;
use berth_engine_docker::{parse_rfc3339, parse_rfc3339_nanos};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// One frame of Docker's multiplexed stream: from stderr or not, its bytes.
type Frame = (bool, Vec<u8>);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How often a follow with no output checks whether to stop.
const STOP_POLL: Duration = Duration::from_millis(200);

impl SwarmBackend {
    /// Blocks; `sink` and `stop` are called outside the runtime, since
    /// they may call the backend (attached `up` observes while it follows).
    pub(crate) fn stream_logs(
        &self,
        project: &str,
        options: &LogOptions,
        sink: &mut dyn FnMut(LogLine),
        stop: &dyn Fn() -> bool,
    ) -> Result<()> {
        let services = self.block(self.stack_services(project))?;
        if services.is_empty() {
            return Err(BackendError::not_running(project));
        }
        let query = Query::of(options)?;
        // Task IDs to (name, service); refreshed when a roll starts a task.
        let mut names = self.block(self.task_names(&services))?;
        let mut refreshed = HashSet::new();
        let (tx, mut rx) = mpsc::unbounded_channel::<Result<Frame>>();
        let mut streams = tokio::task::JoinSet::new();
        let spawning = self.rt.enter();
        for s in &services {
            let service = crate::observe::compose_service(s).unwrap_or_default();
            // berth's proxy is not the project's: shown only when named.
            let wanted = if options.services.is_empty() {
                service != PROXY_SERVICE
            } else {
                options.services.contains(&service)
            };
            let Some(id) = s.id.clone().filter(|_| wanted) else {
                continue;
            };
            let (host, path, tx) = (
                self.endpoint.host.clone(),
                format!("/services/{id}/logs?{}", query.params),
                tx.clone(),
            );
            streams.spawn(async move {
                if let Err(e) = read_frames(&host, &path, &service, &tx).await {
                    let _ = tx.send(Err(e));
                }
            });
        }
        drop((tx, spawning));
        let mut collected = Vec::new();
        loop {
            let Ok(item) = self.block(async { tokio::time::timeout(STOP_POLL, rx.recv()).await })
            else {
                if stop() {
                    break;
                }
                continue;
            };
            let Some(item) = item else { break };
            let (stderr, bytes) = item?;
            for raw in String::from_utf8_lossy(&bytes).lines() {
                let line = parse_line(raw);
                if !query.admits(line.time) {
                    continue;
                }
                let task = line.task.unwrap_or_default();
                if !names.contains_key(task) && refreshed.insert(task.to_string()) {
                    names = self.block(self.task_names(&services))?;
                }
                let (container, service) = names
                    .get(task)
                    .cloned()
                    .unwrap_or_else(|| (task.to_string(), String::new()));
                let out = LogLine {
                    container,
                    service,
                    stderr,
                    time: line.time.map(str::to_string),
                    text: line.text.to_string(),
                };
                if options.follow {
                    sink(out);
                } else {
                    collected.push(out);
                }
            }
            if options.follow && stop() {
                break;
            }
        }
        // Oldest first across tasks; the sort is stable, so each task's
        // lines keep their order.
        collected.sort_by_key(|l| l.time.as_deref().and_then(parse_rfc3339_nanos));
        collected.into_iter().for_each(sink);
        Ok(())
    }

    async fn task_names(
        &self,
        services: &[bollard::models::Service],
    ) -> Result<HashMap<String, (String, String)>> {
        Ok(self
            .tasks(services, false)
            .await?
            .into_iter()
            .map(|t| (t.id, (t.name, t.service)))
            .collect())
    }
}

/// The service logs call's parameters, and the bound it cannot express.
struct Query {
    params: String,
    /// `--until`, in nanoseconds: the call has no such parameter.
    until: Option<i64>,
}

impl Query {
    fn of(options: &LogOptions) -> Result<Query> {
        let mut params = String::from("stdout=1&stderr=1&timestamps=1&details=1");
        if options.follow {
            params.push_str("&follow=1");
        }
        // From now on: nothing of what was written before.
        let tail = if options.from_now {
            Some(0)
        } else {
            options.tail
        };
        if let Some(n) = tail {
            params.push_str(&format!("&tail={n}"));
        }
        if let Some(s) = &options.since {
            let secs = parse_rfc3339(s)
                .ok_or_else(|| BackendError::invalid(format!("--since {s}: not a time")))?;
            params.push_str(&format!("&since={secs}"));
        }
        let until = match &options.until {
            Some(s) => Some(
                parse_rfc3339_nanos(s)
                    .ok_or_else(|| BackendError::invalid(format!("--until {s}: not a time")))?,
            ),
            None => None,
        };
        Ok(Query { params, until })
    }

    fn admits(&self, time: Option<&str>) -> bool {
        match (self.until, time.and_then(parse_rfc3339_nanos)) {
            (Some(until), Some(t)) => t <= until,
            _ => true,
        }
    }
}

/// A line of a service's log with `timestamps` and `details`:
/// `TIME com.docker.swarm.node.id=…,…,com.docker.swarm.task.id=ID TEXT`.
#[derive(Debug, PartialEq, Eq)]
struct Line<'a> {
    time: Option<&'a str>,
    task: Option<&'a str>,
    text: &'a str,
}

fn parse_line(raw: &str) -> Line<'_> {
    let (time, rest) = match raw.split_once(' ') {
        Some((t, rest)) if t.contains('T') && t.ends_with('Z') => (Some(t), rest),
        _ => (None, raw),
    };
    let (details, text) = match rest.split_once(' ') {
        Some((d, text)) if d.starts_with("com.docker.swarm.") => (d, text),
        _ if rest.starts_with("com.docker.swarm.") => (rest, ""),
        _ => ("", rest),
    };
    let task = details
        .split(',')
        .find_map(|kv| kv.strip_prefix("com.docker.swarm.task.id="));
    Line { time, task, text }
}

/// Take every whole frame (an 8-byte header: stream, 0, 0, 0, big-endian
/// length) off the front of `buf`.
fn take_frames(buf: &mut Vec<u8>) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut at = 0;
    while buf.len() - at >= 8 {
        let h = &buf[at..at + 8];
        let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
        if buf.len() - at - 8 < len {
            break;
        }
        frames.push((h[0] == 2, buf[at + 8..at + 8 + len].to_vec()));
        at += 8 + len;
    }
    buf.drain(..at);
    frames
}

async fn connect(host: &str) -> std::io::Result<Box<dyn Io>> {
    if let Some(path) = host.strip_prefix("unix://") {
        return Ok(Box::new(tokio::net::UnixStream::connect(path).await?));
    }
    let addr = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))
        .ok_or_else(|| std::io::Error::other("only unix:// and tcp:// managers are supported"))?;
    Ok(Box::new(
        tokio::net::TcpStream::connect(addr.trim_end_matches('/')).await?,
    ))
}

/// One service's log stream, frame by frame into `tx`, until the daemon
/// ends it (or the receiver is gone).
async fn read_frames(
    host: &str,
    path: &str,
    service: &str,
    tx: &mpsc::UnboundedSender<Result<Frame>>,
) -> Result<()> {
    let fail =
        |e: &dyn std::fmt::Display| BackendError::engine(format!("logs of {service}: {host}: {e}"));
    let mut io = connect(host).await.map_err(|e| fail(&e))?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n");
    io.write_all(request.as_bytes())
        .await
        .map_err(|e| fail(&e))?;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let body_at = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = io.read(&mut chunk).await.map_err(|e| fail(&e))?;
        if n == 0 {
            return Err(fail(&"the daemon closed the connection before answering"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..body_at]).to_string();
    buf.drain(..body_at);
    let status = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    if status != "200" {
        io.read_to_end(&mut buf).await.map_err(|e| fail(&e))?;
        let body = String::from_utf8_lossy(&buf);
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| body.trim().to_string());
        return Err(fail(&format!("HTTP {status}: {message}")));
    }
    loop {
        for frame in take_frames(&mut buf) {
            if tx.send(Ok(frame)).is_err() {
                return Ok(());
            }
        }
        let n = io.read(&mut chunk).await.map_err(|e| fail(&e))?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detailed_line_names_its_task() {
        let l = parse_line(
            "2026-12-02T18:44:25.392698491Z com.docker.swarm.node.id=n1,com.docker.swarm.service.id=s1,com.docker.swarm.task.id=t1 hello from a b",
        );
        assert_eq!(
            l,
            Line {
                time: Some("2026-12-02T18:44:25.392698491Z"),
                task: Some("t1"),
                text: "hello from a b"
            }
        );
        let plain = parse_line("no time nor details");
        assert_eq!(
            (plain.time, plain.task, plain.text),
            (None, None, "no time nor details")
        );
        let empty = parse_line("2026-12-02T18:44:25Z com.docker.swarm.task.id=t2");
        assert_eq!((empty.task, empty.text), (Some("t2"), ""));
    }

    #[test]
    fn frames_are_taken_whole_and_a_partial_one_waits() {
        let mut buf = vec![
            1, 0, 0, 0, 0, 0, 0, 2, b'h', b'i', 2, 0, 0, 0, 0, 0, 0, 3, b'e',
        ];
        assert_eq!(take_frames(&mut buf), vec![(false, b"hi".to_vec())]);
        assert_eq!(buf.len(), 9);
        buf.extend_from_slice(b"rr");
        assert_eq!(take_frames(&mut buf), vec![(true, b"err".to_vec())]);
        assert!(buf.is_empty());
    }

    #[test]
    fn until_is_applied_here_and_since_goes_to_the_daemon() {
        let q = Query::of(&LogOptions {
            since: Some("2026-12-02T18:00:00Z".into()),
            until: Some("2026-12-02T19:00:00Z".into()),
            tail: Some(5),
            ..Default::default()
        })
        .unwrap();
        assert!(
            q.params.contains("&tail=5&since=1796234400"),
            "{}",
            q.params
        );
        assert!(q.admits(Some("2026-12-02T18:59:59.9Z")));
        assert!(!q.admits(Some("2026-12-02T19:00:00.1Z")));
        let bad = Query::of(&LogOptions {
            since: Some("yesterday".into()),
            ..Default::default()
        });
        assert_eq!(bad.err().unwrap().message, "--since yesterday: not a time");
    }
}
