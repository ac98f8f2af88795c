//! The push channel (ECS's ACS): finds the endpoint with
//! `DiscoverPollEndpoint`, keeps a WebSocket open to it with heartbeats both
//! ways and exponential-backoff reconnects, applies payloads and manifests
//! to the engine, acknowledges payloads once applied, and forwards the
//! engine's health reports.

use std::sync::atomic::Ordering;
use std::time::Duration;

use berth_types::DiscoverPollEndpointRequest;
use berth_types::agent::{ACS_PATH, AgentMessage, ServerMessage};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::agent::Uplink;
use crate::engine::Engine;

const BACKOFF_START: Duration = Duration::from_millis(250);
/// A connection that lasted this long resets the backoff.
const HEALTHY_SESSION: Duration = Duration::from_secs(60);
/// Silence longer than this many heartbeat intervals means the peer is gone.
const MISSED_HEARTBEATS: u32 = 3;
/// The channel carries small JSON frames; tungstenite's default 128 KiB read
/// and write buffers per socket would dominate the memory of a process
/// simulating thousands of hosts. Larger frames still arrive: the read
/// buffer grows as needed.
const SOCKET_BUFFER: usize = 4 * 1024;

pub(crate) struct ChannelConfig<'a> {
    pub uplink: &'a Uplink,
    pub engine: &'a Engine,
    pub health: mpsc::UnboundedReceiver<AgentMessage>,
    pub cluster: &'a str,
    pub container_instance_arn: &'a str,
    pub heartbeat: Duration,
    pub max_backoff: Duration,
}

fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The WebSocket URL for the endpoint `DiscoverPollEndpoint` returned.
pub(crate) fn channel_url(endpoint: &str, cluster: &str, container_instance: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    let base = if let Some(rest) = endpoint.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = endpoint.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        endpoint.to_owned()
    };
    format!(
        "{base}{ACS_PATH}?cluster={}&containerInstance={}",
        percent_encode(cluster),
        percent_encode(container_instance)
    )
}

/// Keeps the channel up forever; the caller ends it by dropping the future.
pub(crate) async fn serve(mut config: ChannelConfig<'_>) {
    let mut backoff = BACKOFF_START;
    loop {
        let connected_at = Instant::now();
        // Boxed: connecting is brief, and an unboxed HTTP call and handshake
        // would stay part of every host's future for its whole life.
        match Box::pin(connect(&config)).await {
            Ok(socket) => {
                tracing::info!("push channel connected");
                let census = &config.uplink.census;
                census.connected.fetch_add(1, Ordering::Relaxed);
                session(&mut config, socket).await;
                census.connected.fetch_sub(1, Ordering::Relaxed);
                tracing::info!("push channel closed");
            }
            Err(error) => tracing::warn!(%error, "cannot open the push channel"),
        }
        if connected_at.elapsed() >= HEALTHY_SESSION {
            backoff = BACKOFF_START;
        }
        // Jitter spreads the reconnects of many hosts after a server restart.
        let jitter = backoff.mul_f64(rand::random::<f64>() * 0.2);
        tokio::time::sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(config.max_backoff);
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(config: &ChannelConfig<'_>) -> Result<Socket, String> {
    let client = &config.uplink.client;
    let _turn = config.uplink.turn().await;
    let request = DiscoverPollEndpointRequest {
        cluster: Some(config.cluster.to_owned()),
        container_instance: Some(config.container_instance_arn.to_owned()),
    };
    let response = client.send(&request).await.map_err(|e| e.to_string())?;
    let endpoint = response
        .endpoint
        .unwrap_or_else(|| client.endpoint().to_owned());
    let url = channel_url(&endpoint, config.cluster, config.container_instance_arn);
    let buffers = WebSocketConfig::default()
        .read_buffer_size(SOCKET_BUFFER)
        .write_buffer_size(SOCKET_BUFFER);
    let (socket, _) =
        tokio_tungstenite::connect_async_with_config(url.as_str(), Some(buffers), false)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
    Ok(socket)
}

async fn session(config: &mut ChannelConfig<'_>, socket: Socket) {
    let (mut sink, mut stream) = socket.split();
    let mut ticker = tokio::time::interval(config.heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let silence = config.heartbeat * MISSED_HEARTBEATS;
    loop {
        let outgoing: Vec<AgentMessage> = tokio::select! {
            frame = stream.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                    Some(Ok(_)) => {
                        last_heard = Instant::now();
                        continue;
                    }
                };
                last_heard = Instant::now();
                match serde_json::from_str::<ServerMessage>(text.as_str()) {
                    Ok(ServerMessage::Close { reason }) => {
                        tracing::info!(reason, "server closed the push channel");
                        return;
                    }
                    Ok(message) => handle(config.engine, message),
                    Err(error) => {
                        tracing::warn!(%error, "ignoring an unreadable frame");
                        Vec::new()
                    }
                }
            }
            _ = ticker.tick() => {
                if last_heard.elapsed() > silence {
                    tracing::warn!("nothing heard from the server; reconnecting");
                    return;
                }
                vec![AgentMessage::Heartbeat { message_id: uuid::Uuid::new_v4().to_string() }]
            }
            Some(message) = config.health.recv() => vec![message],
        };
        for message in outgoing {
            let Ok(json) = serde_json::to_string(&message) else {
                continue;
            };
            if sink.send(Message::text(json)).await.is_err() {
                return;
            }
        }
    }
}

/// Applies one server frame; returns the answers to send.
fn handle(engine: &Engine, message: ServerMessage) -> Vec<AgentMessage> {
    match message {
        ServerMessage::Payload(payload) => {
            engine.apply(payload.tasks);
            vec![AgentMessage::Ack {
                message_id: payload.message_id,
                seq_num: payload.seq_num,
            }]
        }
        ServerMessage::Manifest(manifest) => {
            engine.apply_manifest(&manifest);
            Vec::new()
        }
        ServerMessage::Heartbeat { message_id } => vec![AgentMessage::HeartbeatAck { message_id }],
        ServerMessage::HeartbeatAck { .. } | ServerMessage::Close { .. } => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_follows_the_discovered_endpoint() {
        assert_eq!(
            channel_url(
                "http://10.0.0.1:4610/",
                "default",
                "arn:aws:ecs:us-east-1:1:container-instance/default/ab"
            ),
            "ws://10.0.0.1:4610/ws/acs?cluster=default&containerInstance=arn%3Aaws%3Aecs%3Aus-east-1%3A1%3Acontainer-instance%2Fdefault%2Fab"
        );
        assert!(channel_url("https://h", "c", "i").starts_with("wss://h/ws/acs?"));
    }
}
