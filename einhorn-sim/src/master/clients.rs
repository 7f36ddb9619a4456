//! The command-socket clients: their lines in, replies out, and when a
//! connection closes.

use super::*;

impl Master {
    pub(super) fn send(&mut self, conn: ConnId, value: Value) {
        let Some(client) = self.clients.connections.get(&conn) else {
            return;
        };
        let line = protocol::encode(&value);
        let pending = client.pending.fetch_add(line.len(), Ordering::Relaxed) + line.len();
        if pending > MAX_PENDING_OUTPUT {
            let who = self.clients.peers.get(&conn).cloned().unwrap_or_default();
            self.error(&format!(
                "Disconnecting command socket client {conn} ({who}): it left more than {} MiB of replies unread",
                MAX_PENDING_OUTPUT >> 20
            ));
            client.abort.notify_one();
            self.clients.connections.remove(&conn);
            self.clients.subscribers.retain(|(c, _)| *c != conn);
            return;
        }
        let _ = client.tx.send(Outgoing::Line(line));
    }

    pub(super) fn close(&mut self, conn: ConnId) {
        if let Some(client) = self.clients.connections.remove(&conn) {
            let _ = client.tx.send(Outgoing::Close);
        }
        self.clients.subscribers.retain(|(c, _)| *c != conn);
    }

    pub(super) fn on_input(&mut self, input: Input) {
        match input {
            Input::Connected(conn, client, peer) => {
                self.clients.connections.insert(conn, client);
                self.clients.peers.insert(conn, peer);
            }
            Input::Line(conn, request) => {
                // Lines after a worker:ack on the same connection are still
                // run, but nobody hears their replies (as in Einhorn).
                match request {
                    Some(request) => self.process(conn, request),
                    None => self.send(
                        conn,
                        protocol::reply("Could not parse command", None, false),
                    ),
                }
                if let Some(client) = self.clients.connections.get(&conn) {
                    client.handled.notify_one();
                }
            }
            Input::TooLong(conn) => {
                self.send(
                    conn,
                    protocol::reply("Could not parse command", None, false),
                );
                self.close(conn);
            }
            Input::ReadDone(conn) => {
                if !self.clients.subscribers.iter().any(|(c, _)| *c == conn) {
                    self.close(conn);
                }
            }
            Input::Closed(conn) => {
                self.clients.connections.remove(&conn);
                self.clients.peers.remove(&conn);
                self.clients.subscribers.retain(|(c, _)| *c != conn);
            }
            Input::Rebuilt(paths) => self.on_rebuilt(&paths),
        }
    }
}
