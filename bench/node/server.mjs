// The Node peer of the benchmark: better-sse on node:http, the way its docs show a channel.
// One channel; POST /publish broadcasts the request body (the same payload our server sends,
// passed through as is) to every open stream on GET /sse. No authentication and no database,
// like the Python reference. Keep-alive comments every 30 s, as the Python reference pings.
//
//     node bench/node/server.mjs <port>
import http from "node:http";
import { createChannel, createSession } from "better-sse";

const port = Number(process.argv[2] ?? 9200);
const channel = createChannel();
const asIs = (data) => String(data);

const server = http.createServer(async (req, res) => {
  if (req.method === "GET" && req.url === "/sse") {
    const session = await createSession(req, res, { keepAlive: 30_000, serializer: asIs });
    channel.register(session);
    return;
  }
  if (req.method === "POST" && req.url === "/publish") {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    channel.broadcast(Buffer.concat(chunks).toString("utf8"), "notification:new");
    res.writeHead(204).end();
    return;
  }
  res.writeHead(404).end();
});
server.listen({ port, host: "127.0.0.1", backlog: 16384 });
