// Dev-only stand-in for the gateway (no dependencies): serves dist/ at / and
// proxies the API to one executor, the way the gateway would — status codes,
// Retry-After and x-request-id pass through, and the JSON `executor` field is
// copied into an `x-runbox-executor` header.
//
//   RUNBOX_API=http://127.0.0.1:8081 SERVE_LISTEN=127.0.0.1:8080 node tests/serve.mjs
//
// Loopback only. Not used in production: the gateway embeds dist/ itself.

import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dist = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist');
const api = new URL(process.env.RUNBOX_API ?? 'http://127.0.0.1:8081');
const [host, port] = splitHostPort(process.env.SERVE_LISTEN ?? '127.0.0.1:8080');

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost', '[::1]']);
if (!LOOPBACK.has(host) || !LOOPBACK.has(api.hostname)) {
  console.error(`serve.mjs is a dev tool and only talks over loopback (listen ${host}, api ${api.hostname})`);
  process.exit(2);
}

const STATIC = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/index.html': ['index.html', 'text/html; charset=utf-8'],
  '/app.js': ['app.js', 'text/javascript; charset=utf-8'],
  '/app.css': ['app.css', 'text/css; charset=utf-8'],
};
const PROXIED = new Set(['/execute', '/runtimes', '/healthz', '/readyz']);
const PASS_HEADERS = ['content-type', 'retry-after', 'x-request-id'];

const server = createServer(async (req, res) => {
  const path = new URL(req.url, 'http://x').pathname;
  try {
    if (PROXIED.has(path)) return await proxy(req, res, path);
    const file = STATIC[path];
    if (file && (req.method === 'GET' || req.method === 'HEAD')) {
      const body = await readFile(join(dist, file[0]));
      res.writeHead(200, { 'content-type': file[1], 'cache-control': 'no-cache' });
      return res.end(req.method === 'HEAD' ? undefined : body);
    }
    sendError(res, 404, 'not_found', `no route for ${req.method} ${path}`);
  } catch (err) {
    sendError(res, 500, 'internal', `dev server: ${err.message}`);
  }
});

async function proxy(req, res, path) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const headers = {};
  for (const name of ['content-type', 'accept', 'x-request-id']) {
    if (req.headers[name]) headers[name] = req.headers[name];
  }
  let upstream;
  try {
    upstream = await fetch(new URL(path, api), {
      method: req.method,
      headers,
      body: chunks.length ? Buffer.concat(chunks) : undefined,
      signal: AbortSignal.timeout(65_000),
    });
  } catch (err) {
    return sendError(res, 502, 'upstream_unreachable', `could not reach the executor at ${api.origin}: ${err.cause?.code ?? err.message}`);
  }
  const body = Buffer.from(await upstream.arrayBuffer());
  const out = {};
  for (const name of PASS_HEADERS) {
    const value = upstream.headers.get(name);
    if (value) out[name] = value;
  }
  try {
    const executor = JSON.parse(body.toString('utf8')).executor;
    if (typeof executor === 'string' && executor) out['x-runbox-executor'] = executor;
  } catch {
    // not JSON (probes): nothing to copy
  }
  res.writeHead(upstream.status, out);
  res.end(body);
}

function sendError(res, status, code, message) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: { code, message }, id: null }));
}

function splitHostPort(listen) {
  const i = listen.lastIndexOf(':');
  return [listen.slice(0, i), Number(listen.slice(i + 1))];
}

server.listen(port, host.replace(/^\[|\]$/g, ''), () => {
  const { address, port: bound } = server.address();
  console.log(`runbox dev server on http://${address.includes(':') ? `[${address}]` : address}:${bound} → API ${api.origin}`);
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
