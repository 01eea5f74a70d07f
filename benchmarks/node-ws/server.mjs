// A minimal vote relay on the ws library: the peer "node-ws" of `ama bench`.
//
// It speaks the subset of the AMA client protocol that the bench uses.
// A `hello` gets `welcome` and a `snapshot`, and its token is taken as the
// user id. Every `vote` sets that user's vote, then sends one `patch` with
// the question's new counts to every open socket, with no batching.
// Prints {"listening": PORT} on stdout once it accepts sockets.
//
// Usage: node server.mjs [--host 127.0.0.1] [--port 0]
import { WebSocketServer, WebSocket } from "ws";

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const index = args.indexOf(name);
  return index >= 0 ? args[index + 1] : fallback;
};

const MAX_FRAME_BYTES = 65536;
const server = new WebSocketServer({
  host: option("--host", "127.0.0.1"),
  port: Number(option("--port", "0")),
  perMessageDeflate: false,
  maxPayload: MAX_FRAME_BYTES,
  backlog: 511,
});

// question id -> Map(user id -> 1 | -1)
const votes = new Map();

function questionView(id) {
  let up = 0;
  let down = 0;
  for (const value of (votes.get(id) ?? new Map()).values()) {
    if (value === 1) up += 1;
    else if (value === -1) down += 1;
  }
  return { id, up, down, score: up - down };
}

function handle(socket, frame) {
  if (frame.type === "hello") {
    socket.user = String(frame.token);
    socket.send(JSON.stringify({ type: "welcome", user: socket.user }));
    const questions = [...votes.keys()].map(questionView);
    socket.send(JSON.stringify({ type: "snapshot", seq: 0, questions }));
    return;
  }
  if (socket.user === undefined) {
    socket.close(1008, "the first frame must be hello");
    return;
  }
  if (frame.type === "vote" && typeof frame.question === "string" && [1, 0, -1].includes(frame.value)) {
    if (!votes.has(frame.question)) votes.set(frame.question, new Map());
    const byUser = votes.get(frame.question);
    if (frame.value === 0) byUser.delete(socket.user);
    else byUser.set(socket.user, frame.value);
    // Encode once, send the same bytes to everyone.
    const patch = Buffer.from(JSON.stringify({ type: "patch", questions: [questionView(frame.question)] }));
    for (const client of server.clients) {
      if (client.readyState === WebSocket.OPEN) client.send(patch, { binary: false });
    }
    socket.send(JSON.stringify({ type: "ack", id: frame.id, status: "accepted" }));
    return;
  }
  socket.send(JSON.stringify({ type: "error", code: "invalid_frame", message: "Send hello or vote frames." }));
}

server.on("connection", (socket) => {
  socket.on("message", (data, isBinary) => {
    let frame;
    try {
      frame = JSON.parse(isBinary ? "" : data.toString());
    } catch {
      socket.close(1007, "invalid JSON");
      return;
    }
    handle(socket, frame);
  });
  socket.on("error", () => {});
});

server.on("listening", () => {
  process.stdout.write(JSON.stringify({ listening: server.address().port }) + "\n");
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}
