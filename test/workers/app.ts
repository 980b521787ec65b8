/**
 * An app process for the fault tests: the cache middleware in front of pages of any size. Prints its
 * port on stdout once listening. Usage: node --import tsx test/workers/app.ts <root> [--as-nobody]
 * With --as-nobody it drops to uid/gid 65534 after loading its code, so file permissions apply.
 */
import { readdirSync } from 'node:fs';
import http from 'node:http';
import { createCache } from '../../src/index.js';

const [root, mode] = process.argv.slice(2);
if (root === undefined) throw new Error('usage: app.ts <root> [--as-nobody]');
const warnings: string[] = [];
const cache = createCache({ root, log: (message, error) => warnings.push(`${message}${error instanceof Error ? `: ${error.message}` : ''}`) });
if (mode === '--as-nobody') {
  process.setgid?.(65534);
  process.setuid?.(65534);
}

/** `/page/<size>/<name>`: a page of `size` bytes, written in 64 KiB chunks; whole pages end in </html>. */
const server = http.createServer(cache.wrap((req, res) => {
  if (req.url === '/__stats') {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
    res.end(JSON.stringify({ rss: process.memoryUsage().rss, fds: readdirSync('/proc/self/fd').length, warnings: warnings.length }));
    return;
  }
  if (req.url === '/__warnings') {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
    res.end(JSON.stringify(warnings));
    return;
  }
  const match = /^\/page\/(\d+)\/([\w-]+)$/.exec((req.url ?? '').split('?')[0] ?? '');
  if (match === null) {
    res.writeHead(404, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end('<p>no</p>');
    return;
  }
  const size = Number(match[1]);
  const head = `<!doctype html><p>${match[2]}</p>`;
  const body = Buffer.from(head + 'x'.repeat(Math.max(0, size - head.length - 7)) + '</html>');
  // A group tag per page, so a soak can purge slices of the site by tag.
  const group = [...(match[2] as string)].reduce((sum, character) => sum + character.charCodeAt(0), 0) % 10;
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': String(body.length), 'Cache-Tag': `size:${size}, group:${group}` });
  let offset = 0;
  const next = (): void => {
    while (offset < body.length) {
      const chunk = body.subarray(offset, offset + 65536);
      offset += chunk.length;
      if (offset >= body.length) {
        res.end(chunk);
        return;
      }
      if (!res.write(chunk)) {
        res.once('drain', next);
        return;
      }
    }
  };
  next();
}));
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`${typeof address === 'object' && address !== null ? address.port : 0}\n`);
});
