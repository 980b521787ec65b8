/**
 * A writer process for the concurrency tests: stores `count` pages into `root` through the same write
 * protocol the middleware uses, several at a time, and prints one JSON report line at the end.
 * Usage: node --import tsx test/workers/writer.ts <root> <name> <count> [--loop]
 * With --loop it writes large pages until killed, printing "ready" once the first is stored.
 */
import pLimit from 'p-limit';
import { CacheRoot } from '../../src/cache-root.js';
import { PageBody } from '../../src/page-body.js';

const [root, name, countText, mode] = process.argv.slice(2);
if (root === undefined || name === undefined || countText === undefined) throw new Error('usage: writer.ts <root> <name> <count> [--loop]');
const cacheRoot = new CacheRoot(root, { durable: false });
const count = Number(countText);

/** Page bodies end with a marker, so a reader can tell a complete page from a torn one. */
function body(label: string, size: number): Buffer {
  const head = `<!doctype html><p>${label}</p>`;
  return Buffer.from(head + 'x'.repeat(Math.max(0, size - head.length - 7)) + '</html>');
}

async function write(index: number, size: number): Promise<{ file: string; tags: string[]; stored: boolean; renderedAt: number }> {
  const file = `${name}/p${index}/index.html`;
  const tags = [`writer:${name}`, index % 3 === 0 ? 'victim' : 'bystander', `page:${index % 50}`];
  const renderedAt = Date.now();
  const temp = new PageBody();
  const bytes = body(`${name} ${index}`, size);
  temp.write(bytes);
  const result = await cacheRoot.commit(temp, {
    urlPath: `/${name}/p${index}`, file, tags, renderedAt, storedAt: Date.now(), expiresAt: null, mediaType: 'text/html', size: bytes.length, mtime: Math.floor(renderedAt / 1000),
  });
  return { file, tags, stored: result.stored, renderedAt };
}

if (mode === '--loop') {
  let index = 0;
  for (;;) {
    await write(index % count, index % 2 === 0 ? 2 * 1024 * 1024 : 300);
    if (index === 0) process.stdout.write('ready\n');
    index++;
  }
} else {
  const limit = pLimit(8);
  const results = await Promise.all(Array.from({ length: count }, (_, index) => limit(() => write(index, 200 + (index % 7) * 100))));
  process.stdout.write(`${JSON.stringify(results)}\n`);
}
