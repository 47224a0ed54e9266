//! A real HTTP/1.1 server on loopback for `geoip update`: serves fixed responses by path, and
//! can lie about a body's length to cut a download short.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One response.
#[derive(Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Body bytes actually sent.
    pub body: Vec<u8>,
    /// Content-Length announced (more than the body: a truncated transfer).
    pub announced: Option<usize>,
}

impl Reply {
    /// 200 with `body`.
    pub fn ok(body: Vec<u8>) -> Reply {
        Reply {
            status: 200,
            body,
            announced: None,
        }
    }
    /// A 200 whose connection closes after `sent` of `body`'s bytes.
    pub fn truncated(body: Vec<u8>, sent: usize) -> Reply {
        let announced = Some(body.len());
        Reply {
            status: 200,
            body: body[..sent].to_vec(),
            announced,
        }
    }
}

/// A running server; stops when dropped.
pub struct HttpServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Paths requested, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl HttpServer {
    /// Serves `routes` (path -> reply); other paths get 404.
    pub fn start(routes: HashMap<String, Reply>) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (stop.clone(), requests.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                        break;
                    }
                }
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .to_string();
                r.lock().unwrap().push(path.clone());
                let reply = routes.get(&path).cloned().unwrap_or(Reply {
                    status: 404,
                    body: b"not found".to_vec(),
                    announced: None,
                });
                let len = reply.announced.unwrap_or(reply.body.len());
                let head = format!(
                    "HTTP/1.1 {} X\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n",
                    reply.status
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&reply.body);
                let _ = stream.flush();
            }
        });
        HttpServer {
            addr,
            requests,
            stop,
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
