/**
 * The peer of bench/proxy.bench.ts: a bare reverse proxy — node:http in front, undici's Agent
 * (a connection pool per origin) behind, bodies piped, hop-by-hop headers dropped, nothing else:
 * no balancing, health checks, breakers, limits, caching or failover. What any proxy costs at
 * least on this stack. Forwards to the origin given as argv[2]; prints its URL.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { Agent, type Dispatcher } from 'undici';

const origin = process.argv[2]!;
const agent = new Agent({ connections: 256, keepAliveTimeout: 4000 });
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host', 'proxy-authorization']);
const server = createServer((req, res) => {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP.has(k)) headers[k] = v;
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  agent.request({ origin, path: req.url ?? '/', method: (req.method ?? 'GET') as Dispatcher.HttpMethod, headers, body: hasBody ? req : undefined })
    .then(async (up) => {
      res.statusCode = up.statusCode;
      for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && !HOP.has(k)) res.setHeader(k, v);
      await pipeline(up.body, res);
    })
    .catch(() => {
      if (!res.headersSent) {
        res.statusCode = 502;
        res.end();
      } else {
        res.destroy();
      }
    });
});
server.listen(0, '127.0.0.1', () => {
  const a = server.address() as AddressInfo;
  console.log(JSON.stringify({ url: `http://127.0.0.1:${a.port}` }));
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
