/**
 * A generated corpus of 10,000 hostile request-targets, sent as raw bytes (no URL library) to the app
 * with the middleware and then through nginx in front of it. Afterwards: nothing outside the root, no
 * file at a non-canonical path, no crash or unhandled rejection, and every disk hit nginx served was
 * for a canonical target whose file it was.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { isUtf8 } from 'node:buffer';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { createCache } from '../src/index.js';
import { encodePath, toCachePath } from '../src/url-path.js';
import { seededRandom as prng } from '../fixtures/random.js';
import { listFiles, nginxAvailable, removeDir, startNginx, startServer, tempDir } from './helpers.js';

const hasNginx = nginxAvailable();


const pieces = [
  'a', 'b', 'page', 'x.css', 'x.json', 'index.html', 'v1.2', 'a..b', '.well-known', '.prerender', '%2eprerender',
  '.', '..', '%2e', '%2E', '%2e%2e', '%2E%2e', '.%2e', '%2e.', '%252e%252e', '%25', '%2525', '...', '..;', ';',
  '%2f', '%2F', '..%2f', '%5c', '%5C', '..%5c', '\\', '..\\..', '%00', '%01', '%0a', '%0d%0a', '%09', '%7f', '%20', '+',
  '%ff', '%fe%ff', '%c0%ae', '%c0%af', '%e0%80%ae', '%c3', '%c3%a9', '%C3%A9', 'caf%c3%a9', '%e2%98%83', '%f0%9f%92%a9',
  '%ed%a0%80', '%', '%g1', '%4', '~', '%3f', '%23', '%3b', 'A'.repeat(255), 'B'.repeat(256), 'é'.repeat(130),
];

function corpus(count: number): Buffer[] {
  const random = prng(20261122);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const targets: Buffer[] = [];
  const fixed = ['*', 'http://127.0.0.1/../x', 'http://evil.example/a', '//a', '///', '/', '/?', '/#', `/${'c/'.repeat(1200)}`, `/${'d'.repeat(5000)}`];
  for (const target of fixed) targets.push(Buffer.from(target, 'latin1'));
  while (targets.length < count) {
    const depth = 1 + Math.floor(random() * 5);
    const segments = Array.from({ length: depth }, () => pick(pieces));
    let target = `/${segments.join(random() < 0.1 ? '//' : '/')}`;
    if (random() < 0.15) target += '/';
    if (random() < 0.05) target += '?q=1';
    // Random case flips of percent-escapes and dots, and now and then raw non-ASCII bytes.
    target = target.replace(/%[0-9a-f]{2}/gi, (escape) => (random() < 0.5 ? escape.toUpperCase() : escape.toLowerCase()));
    const bytes = Buffer.from(target, 'utf8');
    if (random() < 0.03) targets.push(Buffer.concat([bytes, Buffer.from([0xc3, 0xa9])]));
    else if (random() < 0.01) targets.push(Buffer.concat([bytes, Buffer.from([0x80])]));
    else targets.push(bytes);
  }
  return targets;
}

interface RawReply {
  status: number;
  xCache: string | undefined;
  body: Buffer;
}

/** One request over its own connection; the target goes into the request line byte for byte. */
function raw(port: number, target: Buffer): Promise<RawReply> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.write(Buffer.concat([Buffer.from('GET '), target, Buffer.from(' HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')]));
    });
    socket.setTimeout(10_000, () => socket.destroy());
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      const all = Buffer.concat(chunks);
      const split = all.indexOf('\r\n\r\n');
      const head = all.subarray(0, split < 0 ? all.length : split).toString('latin1');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
      const xCache = /\r\nx-cache: *([^\r\n]*)/i.exec(head)?.[1];
      let body: Buffer = split < 0 ? Buffer.alloc(0) : all.subarray(split + 4);
      if (/\r\ntransfer-encoding: *chunked/i.test(head)) body = unchunk(body);
      resolve({ status, xCache, body });
    });
  });
}

function unchunk(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  let offset = 0;
  while (offset < body.length) {
    const lineEnd = body.indexOf('\r\n', offset);
    const size = Number.parseInt(body.subarray(offset, lineEnd).toString('latin1'), 16);
    if (!Number.isFinite(size) || size === 0) break;
    parts.push(body.subarray(lineEnd + 2, lineEnd + 2 + size));
    offset = lineEnd + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

async function inParallel<T>(items: readonly T[], width: number, task: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) {
      const index = next++;
      await task(items[index] as T, index);
    }
  }));
}

const hostile = suite('10,000 hostile request-targets, raw, to the app and through nginx');

(hasNginx ? hostile : hostile.skip)('nothing outside the root, nothing non-canonical, every hit was the right file', async () => {
  const dir = await tempDir();
  const root = path.join(dir, 'cache');
  await fs.mkdir(path.join(dir, 'cache-evil'));
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown): void => {
    rejections.push(reason);
  };
  process.on('unhandledRejection', onRejection);
  const cache = createCache({ root, log: () => undefined });
  const app = await startServer(cache.wrap((req, res) => {
    let decoded: string;
    try {
      decoded = decodeURIComponent((req.url ?? '').split('?')[0] ?? '');
    } catch {
      decoded = '(undecodable)';
    }
    // The body depends on the decoded path only, like a real app's routing: spellings of one path agree.
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(`<p>${JSON.stringify(decoded)}</p>`);
  }));
  const nginx = await startNginx({ root, upstream: app.url });
  const targets = corpus(10_000);
  const statuses = new Map<number, number>();
  const count = (status: number): void => {
    statuses.set(status, (statuses.get(status) ?? 0) + 1);
  };
  try {
    await inParallel(targets, 16, async (target) => count((await raw(app.port, target)).status));
    await cache.idle();
    const hits: Array<{ target: Buffer; body: Buffer }> = [];
    await inParallel(targets, 16, async (target) => {
      const reply = await raw(nginx.port, target);
      count(reply.status);
      if (reply.xCache === 'HIT') hits.push({ target, body: reply.body });
    });
    await cache.idle();

    assert.ok(![...statuses.keys()].some((status) => status === 0 || status >= 500), `statuses: ${JSON.stringify([...statuses])}`);
    assert.equal(rejections, []);

    const everything = await listFiles(dir, { includeState: true });
    assert.equal(everything.filter((file) => !file.startsWith('cache/')), [], 'nothing outside the root');
    const stored = await listFiles(root);
    assert.ok(stored.length > 100, `canonical targets were stored: ${stored.length}`);
    for (const file of stored) {
      const segments = file.split('/');
      assert.ok(segments.every((s) => s !== '' && s !== '.' && s !== '..' && !/[\u0000-\u001f\u007f]/.test(s) && !s.includes('\ufffd')), file);
      assert.ok(segments[0] !== '.prerender', file);
    }

    assert.ok(hits.length > 100, `nginx served hits: ${hits.length}`);
    for (const hit of hits) {
      // Raw bytes reach nginx as they are; a target that is not UTF-8 can never be canonical.
      const text = isUtf8(hit.target) ? hit.target.toString('utf8') : '\u0000';
      // An absolute-form target names its path like the origin-form one (RFC 9112 §3.2.2): nginx
      // serves `GET http://evil.example/a` from `/a`'s file, a hit whenever `/a` was stored first.
      const mapped = toCachePath(/^https?:\/\/[^/]*(\/.*)$/i.exec(text)?.[1] ?? text);
      assert.ok(mapped.ok, `nginx served a disk hit for a non-canonical target ${JSON.stringify(hit.target.toString('latin1'))}`);
      if (!mapped.ok) continue;
      // The app produced this file for a path naming the same file (`/x/` and `/x/index.html` are one
      // file by design; the last writer wins).
      const producedFor = JSON.parse(/^<p>(.*)<\/p>$/.exec(hit.body.toString())?.[1] ?? 'null') as string;
      const producedFile = toCachePath(encodePath(producedFor));
      assert.ok(producedFile.ok && producedFile.value.file === mapped.value.file, `${producedFor} -> ${mapped.value.file}`);
    }
    process.stdout.write(` [${targets.length} targets x 2; ${stored.length} files stored; ${hits.length} disk hits checked] `);
  } finally {
    process.off('unhandledRejection', onRejection);
    await nginx.stop();
    await app.close();
    await cache.idle();
    await removeDir(dir);
  }
});

hostile.run();
