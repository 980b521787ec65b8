/**
 * Exact host (DESIGN.md, Host): with an allowlist, a response is stored only when the Host the app saw,
 * and any X-Forwarded-Host, is exactly an entry. Poisoning attempts go through a real nginx running the
 * config `prerender nginx --host` prints, then the genuine visitor must get the genuine page.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createCache } from '../src/index.js';
import { listFiles, nginxAvailable, rawRequest, removeDir, runCli, startNginx, startServer, tempDir, type Nginx, type Server } from './helpers.js';
import type { Cache } from '../src/cache.js';

const hasNginx = nginxAvailable();

interface Context {
  dir: string;
  root: string;
  cache: Cache;
  app: Server;
  nginx: Nginx;
}

/** Builds its links from the Host it sees, as many apps do: the page an attacker would like stored. */
function hostEcho(req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
  res.end(`<a href="//${String(req.headers['x-forwarded-host'] ?? req.headers.host)}/">home</a>`);
}

async function setUp(context: Context, hosts: string[], multiSite = false): Promise<void> {
  context.dir = await tempDir();
  context.root = `${context.dir}/cache`;
  context.cache = createCache({ root: context.root, hosts, multiSite, log: () => undefined });
  context.app = await startServer(context.cache.wrap(hostEcho));
  // The server block exactly as the CLI prints it, only moved to the test's port.
  const printed = await runCli(['nginx', '--root', context.root, '--upstream', context.app.url, ...hosts.flatMap((host) => ['--host', host]), ...(multiSite ? ['--multi-site'] : [])]);
  assert.is(printed.code, 0, printed.stderr);
  context.nginx = await startNginx({
    root: context.root, upstream: context.app.url, hosts, multiSite,
    edit: (generated) => printed.stdout.replace(/listen 80;/, /listen [^;]+;/.exec(generated)?.[0] ?? ''),
  });
}

async function tearDown(context: Context): Promise<void> {
  await context.nginx?.stop();
  await context.app?.close();
  await context.cache?.idle();
  if (context.dir !== undefined) await removeDir(context.dir);
}

async function get(context: Context, target: string, headers: string[]): Promise<{ status: number; xCache: string | undefined; body: string }> {
  const reply = await rawRequest(context.nginx.port, [`GET ${target} HTTP/1.1`, ...headers]);
  await context.cache.idle();
  return reply;
}

const variants: string[][] = [
  ['Host: www.example.com:1337'],
  ['Host: www.example.com:99999'],
  ['Host: www.example.com.'],
  ['Host: WWW.EXAMPLE.COM'],
  ['Host: Www.Example.Com'],
  ['Host: www.example.com', 'X-Forwarded-Host: evil.example'],
  ['Host: www.example.com', 'X-Forwarded-Host: www.example.com:1337'],
];

// ---

const single = suite<Context>('single site: Host variants through nginx are never stored');
if (hasNginx) {
  single.before.each((context) => setUp(context, ['www.example.com']));
  single.after.each(tearDown);
}
const singleTest = hasNginx ? single : single.skip;

singleTest('each variant reaches the app, is not stored, and the genuine visitor then gets the genuine page', async (context) => {
  const hostVariants = variants.filter((headers) => headers.length === 1);
  for (const [index, headers] of hostVariants.entries()) {
    for (let i = 0; i < 2; i++) {
      const reply = await get(context, `/p${index}`, headers);
      assert.ok(reply.xCache !== 'HIT', `${headers.join(' | ')}: ${JSON.stringify(reply)}`);
    }
  }
  assert.equal(await listFiles(context.root), [], 'no variant was stored');
  for (const index of hostVariants.keys()) {
    assert.is((await get(context, `/p${index}`, ['Host: www.example.com'])).xCache, 'MISS');
    const hit = await get(context, `/p${index}`, ['Host: www.example.com']);
    assert.is(hit.xCache, 'HIT');
    assert.is(hit.body, '<a href="//www.example.com/">home</a>');
  }
});

singleTest('a client\'s X-Forwarded-Host is replaced by nginx: whatever is stored is the genuine page', async (context) => {
  for (const [index, headers] of variants.filter((lines) => lines.length > 1).entries()) {
    await get(context, `/x${index}`, headers);
    const hit = await get(context, `/x${index}`, ['Host: www.example.com']);
    assert.is(hit.body, '<a href="//www.example.com/">home</a>', headers.join(' | '));
  }
});

singleTest('a page stored for the genuine Host is not served to the variants (nginx sends them to the app)', async (context) => {
  await get(context, '/q', ['Host: www.example.com']);
  assert.is((await get(context, '/q', ['Host: www.example.com'])).xCache, 'HIT');
  for (const headers of variants.slice(0, 5)) {
    const reply = await get(context, '/q', headers);
    assert.ok(reply.xCache !== 'HIT', headers.join(' | '));
  }
  assert.equal(await listFiles(context.root), ['q/index.html']);
});

singleTest('straight to the app: the middleware alone refuses every variant', async (context) => {
  for (const headers of variants) await rawRequest(context.app.port, ['GET /direct HTTP/1.1', ...headers]);
  await context.cache.idle();
  assert.equal(await listFiles(context.root), []);
});

single.run();

// ---

const withPort = suite<Context>('an entry with a port: exactly that spelling');
if (hasNginx) {
  withPort.before.each((context) => setUp(context, ['www.example.com:8080']));
  withPort.after.each(tearDown);
}
const withPortTest = hasNginx ? withPort : withPort.skip;

withPortTest('www.example.com:8080 is stored and served; the bare name and other ports are not', async (context) => {
  for (const host of ['www.example.com', 'www.example.com:80', 'www.example.com:8081', 'WWW.example.com:8080', 'www.example.com.:8080']) {
    await get(context, '/r', [`Host: ${host}`]);
    assert.ok((await get(context, '/r', [`Host: ${host}`])).xCache !== 'HIT', host);
  }
  assert.equal(await listFiles(context.root), []);
  assert.is((await get(context, '/r', ['Host: www.example.com:8080'])).xCache, 'MISS');
  const hit = await get(context, '/r', ['Host: www.example.com:8080']);
  assert.is(hit.xCache, 'HIT');
  assert.is(hit.body, '<a href="//www.example.com:8080/">home</a>');
});

withPort.run();

// ---

const multi = suite<Context>('multi-site follows the same rule');
if (hasNginx) {
  multi.before.each((context) => setUp(context, ['a.test', 'b.test:8080'], true));
  multi.after.each(tearDown);
}
const multiTest = hasNginx ? multi : multi.skip;

multiTest('variants of a site are not stored in its tree; each exact host gets its own page', async (context) => {
  for (const host of ['A.TEST', 'a.test:1337', 'a.test.', 'b.test', 'b.test:80', 'B.test:8080']) {
    await get(context, '/m', [`Host: ${host}`]);
    assert.ok((await get(context, '/m', [`Host: ${host}`])).xCache !== 'HIT', host);
  }
  const pages = async (): Promise<string[]> => (await listFiles(context.root)).filter((file) => !file.includes('.prerender/'));
  assert.equal(await pages(), []);
  for (const host of ['a.test', 'b.test:8080']) {
    await get(context, '/m', [`Host: ${host}`]);
    const hit = await get(context, '/m', [`Host: ${host}`]);
    assert.is(hit.xCache, 'HIT', host);
    assert.is(hit.body, `<a href="//${host}/">home</a>`);
  }
  assert.equal(await pages(), ['a.test/m/index.html', 'b.test:8080/m/index.html']);
  // nginx replaces a client's X-Forwarded-Host with the Host: what is stored is still the genuine page.
  await get(context, '/m2', ['Host: a.test', 'X-Forwarded-Host: evil.example']);
  assert.is((await get(context, '/m2', ['Host: a.test'])).body, '<a href="//a.test/">home</a>');
});

multi.run();
