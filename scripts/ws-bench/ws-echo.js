// WebSocket echo server on the npm `ws` package for scripts/ws-bench.sh: node ws-echo.js PORT
'use strict';
const { WebSocketServer } = require('./node_modules/ws');
const port = Number(process.argv[2] || 9003);
const wss = new WebSocketServer({ port, host: '0.0.0.0', perMessageDeflate: false });
wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
wss.on('listening', () => console.log(`listening ${port}`));
