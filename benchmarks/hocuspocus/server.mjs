// The Hocuspocus server with its defaults and no extensions: the peer
// "hocuspocus" of `ama bench`. Clients authenticate with any token and
// share Yjs documents by name. Prints {"listening": PORT} on stdout once it
// accepts sockets.
//
// Usage: node server.mjs [--host 127.0.0.1] [--port 0]
import { Server } from "@hocuspocus/server";

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const index = args.indexOf(name);
  return index >= 0 ? args[index + 1] : fallback;
};

const server = new Server({
  address: option("--host", "127.0.0.1"),
  port: Number(option("--port", "0")),
  quiet: true,
});

await server.listen();
process.stdout.write(JSON.stringify({ listening: server.address.port }) + "\n");

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, async () => {
    await server.destroy();
    process.exit(0);
  });
}
