/**
 * The peer of bench/service.bench.ts: a bare node:http hello-world; a POST reads its body and
 * answers a small JSON (the floor of any service that reads request bodies). Prints its URL.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const body = Buffer.from('hello world');
const server = createServer((req, res) => {
  if (req.method === 'POST') {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = JSON.stringify({ bytes: Buffer.concat(chunks).length });
      res.setHeader('Content-Type', 'application/json');
      res.setHeader('Content-Length', Buffer.byteLength(text));
      res.end(text);
    });
    return;
  }
  res.setHeader('Content-Type', 'text/plain');
  res.setHeader('Content-Length', body.length);
  res.end(body);
});
server.listen(0, '127.0.0.1', () => {
  const a = server.address() as AddressInfo;
  console.log(JSON.stringify({ url: `http://127.0.0.1:${a.port}` }));
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
