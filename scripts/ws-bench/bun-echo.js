// WebSocket echo server on Bun (uWebSockets underneath) for scripts/ws-bench.sh: bun bun-echo.js PORT
const port = Number(process.argv[2] || 9002);
Bun.serve({
  port, hostname: "0.0.0.0",
  fetch(req, server) { return server.upgrade(req) ? undefined : new Response("upgrade only", { status: 400 }); },
  websocket: { message(ws, msg) { ws.send(msg); }, idleTimeout: 0, perMessageDeflate: false },
});
console.log(`listening ${port}`);
