//! Rust client of the rtcd API, acting as the Calls plugin does: HTTP calls with Basic
//! credentials and the msgpack WebSocket (`join`/`leave`/`reconnect`/`rtc`). Used by the
//! integration tests and the load tool.
//!
//! Owns: URL parsing (`http[s]://[clientID:authKey@]host:port[/prefix]`), one HTTP/1.1
//! request per connection over plain TCP or rustls, and the WebSocket session. Must not touch
//! daemon internals: it speaks only the wire protocol.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest as _};

use crate::auth::basic_header;
use crate::version::VersionInfo;
use crate::ws::codec::{self, JoinData, RtcMessage, ServerMessage};

/// Client failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid URL {0:?}: {1}")]
    Url(String, &'static str),
    #[error("connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("request failed with status {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("unexpected response: {0}")]
    Decode(String),
    #[error("websocket: {0}")]
    WebSocket(String),
    #[error("timed out")]
    Timeout,
}

/// A byte stream to the server, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Bytes,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Result<serde_json::Value, ClientError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ClientError::Decode(format!("{e}: {}", self.text())))
    }

    fn expect(self, status: StatusCode) -> Result<Self, ClientError> {
        if self.status == status {
            Ok(self)
        } else {
            Err(ClientError::Status {
                status: self.status,
                body: self.text(),
            })
        }
    }
}

/// The API client.
#[derive(Clone)]
pub struct Client {
    tls: Option<Arc<rustls::ClientConfig>>,
    secure: bool,
    host: String,
    port: u16,
    prefix: String,
    credentials: Option<(String, String)>,
    timeout: Duration,
    /// Local address connections are made from (none: the system's choice).
    local_ip: Option<std::net::IpAddr>,
}

impl Client {
    /// Parses `http[s]://[clientID:authKey@]host:port[/prefix]` (the port is required, as for
    /// the plugin's RTCD service URL).
    pub fn new(url: &str) -> Result<Self, ClientError> {
        let err = |why| ClientError::Url(url.to_owned(), why);
        let (secure, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else {
            return Err(err("scheme must be http or https"));
        };
        let (authority, prefix) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let (credentials, host_port) = match authority.rsplit_once('@') {
            Some((creds, hp)) => {
                let (id, key) = creds
                    .split_once(':')
                    .ok_or(err("credentials must be clientID:authKey"))?;
                (Some((id.to_owned(), key.to_owned())), hp)
            }
            None => (None, authority),
        };
        let (host, port) = host_port.rsplit_once(':').ok_or(err("missing port"))?;
        let port = port.parse().map_err(|_| err("bad port"))?;
        Ok(Self {
            tls: None,
            secure,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            prefix: prefix.trim_end_matches('/').to_owned(),
            credentials,
            timeout: Duration::from_secs(30),
            local_ip: None,
        })
    }

    /// Connects from `ip` (e.g. 127.0.0.2 on loopback, to act as another host).
    pub fn with_local_ip(mut self, ip: std::net::IpAddr) -> Self {
        self.local_ip = Some(ip);
        self
    }

    /// Sets the Basic credentials (`clientID`, `authKey`).
    pub fn with_credentials(mut self, client_id: &str, auth_key: &str) -> Self {
        self.credentials = Some((client_id.to_owned(), auth_key.to_owned()));
        self
    }

    /// Sets the rustls config used for `https` (e.g. trusting a test CA).
    pub fn with_tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Per-request timeout (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The `Authorization` header for the configured credentials.
    pub fn auth_header(&self) -> Option<String> {
        self.credentials
            .as_ref()
            .map(|(id, key)| basic_header(id, key))
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    async fn open(&self) -> Result<Box<dyn Io>, ClientError> {
        let addr = self.authority();
        let tcp = match self.local_ip {
            None => TcpStream::connect((self.host.as_str(), self.port)).await,
            Some(ip) => connect_from(ip, (self.host.as_str(), self.port)).await,
        }
        .map_err(|e| ClientError::Connect(addr, e))?;
        tcp.set_nodelay(true).ok();
        if !self.secure {
            return Ok(Box::new(tcp));
        }
        let config = self
            .tls
            .clone()
            .ok_or_else(|| ClientError::Tls("https needs a TLS config".into()))?;
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        Ok(Box::new(tls))
    }

    /// Sends one request with an explicit `Authorization` header (or none).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        authorization: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<HttpResponse, ClientError> {
        tokio::time::timeout(
            self.timeout,
            self.request_inner(method, path, authorization, body),
        )
        .await
        .map_err(|_| ClientError::Timeout)?
    }

    async fn request_inner(
        &self,
        method: Method,
        path: &str,
        authorization: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<HttpResponse, ClientError> {
        let io = self.open().await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        tokio::spawn(connection);
        let uri = if self.prefix.is_empty() {
            path.to_owned()
        } else {
            format!("/{}{path}", self.prefix)
        };
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(hyper::header::HOST, self.authority());
        if let Some(auth) = authorization {
            request = request.header(hyper::header::AUTHORIZATION, auth);
        }
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?
            .to_bytes();
        Ok(HttpResponse {
            status,
            content_type,
            body,
        })
    }

    /// `GET /version`.
    pub async fn version(&self) -> Result<VersionInfo, ClientError> {
        let response = self
            .request(Method::GET, "/version", None, None)
            .await?
            .expect(StatusCode::OK)?;
        serde_json::from_slice(&response.body).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `GET /system` → `cpu_load`.
    pub async fn cpu_load(&self) -> Result<f64, ClientError> {
        let response = self
            .request(Method::GET, "/system", None, None)
            .await?
            .expect(StatusCode::OK)?;
        response.json()?["cpu_load"]
            .as_f64()
            .ok_or_else(|| ClientError::Decode(response.text()))
    }

    /// POSTs a JSON body and checks the status.
    async fn post_json(
        &self,
        path: &str,
        authorization: Option<&str>,
        body: serde_json::Value,
        expected: StatusCode,
    ) -> Result<HttpResponse, ClientError> {
        self.request(
            Method::POST,
            path,
            authorization,
            Some(body.to_string().into_bytes()),
        )
        .await?
        .expect(expected)
    }

    /// `POST /register` of `client_id:auth_key`, sending the configured credentials as Basic
    /// auth as the plugin does.
    pub async fn register(&self, client_id: &str, auth_key: &str) -> Result<(), ClientError> {
        let body = serde_json::json!({ "clientID": client_id, "authKey": auth_key });
        let auth = self.auth_header();
        self.post_json("/register", auth.as_deref(), body, StatusCode::CREATED)
            .await
            .map(drop)
    }

    /// `POST /unregister` of `client_id` with the configured credentials.
    pub async fn unregister(&self, client_id: &str) -> Result<(), ClientError> {
        let body = serde_json::json!({ "clientID": client_id });
        let auth = self.auth_header();
        self.post_json("/unregister", auth.as_deref(), body, StatusCode::OK)
            .await
            .map(drop)
    }

    /// `POST /login` → bearer token.
    pub async fn login(&self, client_id: &str, auth_key: &str) -> Result<String, ClientError> {
        let body = serde_json::json!({ "clientID": client_id, "authKey": auth_key });
        let response = self.post_json("/login", None, body, StatusCode::OK).await?;
        response.json()?["bearerToken"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Decode(response.text()))
    }

    /// `GET /calls/{callID}/sessions` (raw response: callers check 200/404).
    pub async fn call_sessions(&self, call_id: &str) -> Result<HttpResponse, ClientError> {
        self.get_authenticated(&format!("/calls/{call_id}/sessions"))
            .await
    }

    /// `GET /calls/{callID}/stats` (raw response).
    pub async fn call_stats(&self, call_id: &str) -> Result<HttpResponse, ClientError> {
        self.get_authenticated(&format!("/calls/{call_id}/stats"))
            .await
    }

    async fn get_authenticated(&self, path: &str) -> Result<HttpResponse, ClientError> {
        self.request(Method::GET, path, self.auth_header().as_deref(), None)
            .await
    }

    /// Opens the plugin WebSocket (`/ws`, path prefix dropped as the plugin does) and waits
    /// for `hello`.
    pub async fn connect(&self) -> Result<WsClient, ClientError> {
        let scheme = if self.secure { "wss" } else { "ws" };
        let url = format!("{scheme}://{}/ws", self.authority());
        let mut request = url
            .into_client_request()
            .map_err(|e| ClientError::WebSocket(e.to_string()))?;
        if let Some(auth) = self.auth_header() {
            let value = auth
                .parse()
                .map_err(|_| ClientError::WebSocket("bad credentials".into()))?;
            request
                .headers_mut()
                .insert(hyper::header::AUTHORIZATION, value);
        }
        let io = self.open().await?;
        let mut config = tungstenite::protocol::WebSocketConfig::default();
        config.max_message_size = Some(1 << 20);
        let handshake = tokio_tungstenite::client_async_with_config(request, io, Some(config));
        let (stream, _) = tokio::time::timeout(self.timeout, handshake)
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(|e| ClientError::WebSocket(e.to_string()))?;
        let mut client = WsClient {
            stream,
            client_id: String::new(),
            conn_id: String::new(),
        };
        match client.recv_timeout(self.timeout).await? {
            ServerMessage::Hello { client_id, conn_id } => {
                client.client_id = client_id;
                client.conn_id = conn_id;
                Ok(client)
            }
            other => Err(ClientError::Decode(format!(
                "expected hello, got {other:?}"
            ))),
        }
    }
}

/// An open plugin WebSocket.
pub struct WsClient {
    stream: WebSocketStream<Box<dyn Io>>,
    /// From `hello`.
    pub client_id: String,
    /// From `hello`.
    pub conn_id: String,
}

impl WsClient {
    /// Sends raw bytes as one binary frame.
    pub async fn send_raw(&mut self, frame: Vec<u8>) -> Result<(), ClientError> {
        self.send(Message::Binary(frame.into())).await
    }

    /// Sends any WebSocket message.
    pub async fn send(&mut self, message: Message) -> Result<(), ClientError> {
        self.stream
            .send(message)
            .await
            .map_err(|e| ClientError::WebSocket(e.to_string()))
    }

    pub async fn join(&mut self, join: &JoinData) -> Result<(), ClientError> {
        self.send_raw(codec::encode_join(join)).await
    }

    pub async fn leave(&mut self, session_id: &str) -> Result<(), ClientError> {
        self.send_raw(codec::encode_leave(session_id)).await
    }

    pub async fn reconnect(&mut self, session_id: &str) -> Result<(), ClientError> {
        self.send_raw(codec::encode_reconnect(session_id)).await
    }

    pub async fn rtc(&mut self, msg: &RtcMessage) -> Result<(), ClientError> {
        self.send_raw(codec::encode_rtc(msg)).await
    }

    /// Next server message (pings are answered by the library and skipped).
    pub async fn recv(&mut self) -> Result<ServerMessage, ClientError> {
        loop {
            let message = self
                .stream
                .next()
                .await
                .ok_or_else(|| ClientError::WebSocket("connection closed".into()))?
                .map_err(|e| ClientError::WebSocket(e.to_string()))?;
            match message {
                Message::Binary(frame) => {
                    return codec::decode_server(&frame)
                        .map_err(|e| ClientError::Decode(e.to_string()));
                }
                Message::Close(frame) => {
                    return Err(ClientError::WebSocket(format!(
                        "closed by server: {frame:?}"
                    )));
                }
                // The library queued the pong; flushing sends it.
                Message::Ping(_) => {
                    self.stream
                        .flush()
                        .await
                        .map_err(|e| ClientError::WebSocket(e.to_string()))?;
                }
                _ => continue,
            }
        }
    }

    /// [`WsClient::recv`] with a deadline.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<ServerMessage, ClientError> {
        tokio::time::timeout(timeout, self.recv())
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    /// Closes the connection with a close frame.
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}

/// A TCP connection to `target` from local address `ip`.
async fn connect_from(ip: std::net::IpAddr, target: (&str, u16)) -> std::io::Result<TcpStream> {
    let mut last = None;
    for addr in tokio::net::lookup_host(target).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.bind(std::net::SocketAddr::new(ip, 0))?;
        match socket.connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no address")))
}
