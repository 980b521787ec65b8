/**
 * `prerender doctor` against real nginx setups, good and broken.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { siteHandler } from '../fixtures/site/app.js';
import { listFiles, nginxAvailable, removeDir, runCli, startNginx, startServer, tempDir, type Server } from './helpers.js';

const hasNginx = nginxAvailable();

interface Context {
  dir: string;
  root: string;
  app: Server;
}

interface Report {
  ok: boolean;
  checks: Array<{ check: string; ok: boolean; detail: string; fix?: string }>;
}

const doctor = suite<Context>('prerender doctor');
doctor.before.each(async (context) => {
  context.dir = await tempDir();
  context.root = path.join(context.dir, 'cache');
  await fs.mkdir(context.root, { mode: 0o755 });
  context.app = await startServer(siteHandler);
});
doctor.after.each(async (context) => {
  await context.app.close();
  await removeDir(context.dir);
});
const it = hasNginx ? doctor : doctor.skip;

async function run(context: Context, url: string, extra: string[] = []): Promise<{ code: number | null; report: Report }> {
  const result = await runCli(['doctor', '--url', url, '--root', context.root, '--json', ...extra]);
  return { code: result.code, report: JSON.parse(result.stdout || '{}') as Report };
}

function failed(report: Report): string[] {
  return report.checks.filter((check) => !check.ok).map((check) => check.check);
}

it('the generated config passes every check and the probe is cleaned up', async (context) => {
  const nginx = await startNginx({ root: context.root, upstream: context.app.url });
  try {
    const { code, report } = await run(context, nginx.url);
    assert.equal(failed(report), []);
    assert.is(code, 0);
    assert.ok(report.checks.length >= 7);
    assert.equal(await listFiles(context.root), []);
  } finally {
    await nginx.stop();
  }
});

it('nginx serving another directory: "nothing is served from the files"', async (context) => {
  const other = path.join(context.dir, 'elsewhere');
  await fs.mkdir(other, { mode: 0o755 });
  const nginx = await startNginx({ root: other, upstream: context.app.url });
  try {
    const { code, report } = await run(context, nginx.url);
    assert.is(code, 1);
    assert.equal(failed(report), ['nginx serves files stored in the root']);
    assert.match(report.checks.find((c) => !c.ok)?.fix ?? '', 'root');
  } finally {
    await nginx.stop();
  }
});

it('open_file_cache hiding purges and rewrites is caught', async (context) => {
  const nginx = await startNginx({
    root: context.root,
    upstream: context.app.url,
    edit: (server) => server.replace('open_file_cache off;', 'open_file_cache max=100 inactive=60s; open_file_cache_valid 60s; open_file_cache_errors on;'),
  });
  try {
    const { code, report } = await run(context, nginx.url);
    assert.is(code, 1);
    const problems = failed(report);
    assert.ok(problems.includes('a deleted file stops being served') || problems.includes('a rewritten file is served at once'), problems.join('; '));
    assert.ok(report.checks.filter((c) => !c.ok).every((c) => /open_file_cache/.test(c.fix ?? '')));
  } finally {
    await nginx.stop();
  }
});

it('a state directory that is not denied, and POSTs answered by nginx, are caught', async (context) => {
  const nginx = await startNginx({
    root: context.root,
    upstream: context.app.url,
    edit: (server) => server
      .replace(/location \^~ \/\.prerender\/ \{ return 404; \}/, '')
      .replace('if ($request_method !~ ^(GET|HEAD)$) { return 418; }', '')
      .replace('location / {', 'autoindex on;\n    location / {'),
  });
  try {
    const { code, report } = await run(context, nginx.url);
    assert.is(code, 1);
    const problems = failed(report);
    assert.ok(problems.some((p) => p.includes('state directory')), problems.join('; '));
    assert.ok(problems.some((p) => p.includes('POST')), problems.join('; '));
  } finally {
    await nginx.stop();
  }
});

it('query strings answered from disk are caught', async (context) => {
  const rule = 'if ($request_uri ~ "[?#]|//|';
  const nginx = await startNginx({
    root: context.root,
    upstream: context.app.url,
    edit: (server) => {
      // Keep the rule for //, dot segments and encoded dots and slashes; drop only its query-string part.
      assert.ok(server.includes(rule), 'the generated $request_uri rule changed: update this test');
      return server.replace(rule, 'if ($request_uri ~ "//|');
    },
  });
  try {
    const { code, report } = await run(context, nginx.url);
    assert.is(code, 1);
    assert.equal(failed(report), ['requests with a query string go to the app']);
    const check = report.checks.find((c) => !c.ok);
    assert.match(check?.detail ?? '', 'X-Cache: HIT');
    assert.match(check?.fix ?? '', 'query string');
  } finally {
    await nginx.stop();
  }
});

it('a parent directory nginx cannot traverse', async (context) => {
  await fs.chmod(context.dir, 0o700);
  const nginx = await startNginx({ root: context.root, upstream: context.app.url });
  try {
    const { code, report } = await run(context, nginx.url);
    assert.is(code, 1);
    const permission = report.checks.find((c) => c.check.includes('reach and read'));
    assert.ok(permission && !permission.ok);
    assert.match(permission?.fix ?? '', `chmod o+x ${context.dir}`);
  } finally {
    await fs.chmod(context.dir, 0o755);
    await nginx.stop();
  }
});

it('a host allowlist: blamed (not the root) without --host; every check passes with --host', async (context) => {
  const nginx = await startNginx({ root: context.root, upstream: context.app.url, hosts: ['www.example.com'] });
  try {
    const refused = await run(context, nginx.url);
    assert.is(refused.code, 1);
    assert.equal(failed(refused.report), ['nginx serves files stored in the root']);
    const check = refused.report.checks.find((c) => !c.ok);
    assert.match(check?.detail ?? '', 'host "127.0.0.1"');
    assert.match(check?.fix ?? '', 'allowlist');
    assert.match(check?.fix ?? '', '--host');
    assert.not.match(check?.fix ?? '', 'root');

    const allowed = await run(context, nginx.url, ['--host', 'www.example.com']);
    assert.equal(failed(allowed.report), []);
    assert.is(allowed.code, 0);
    assert.ok(allowed.report.checks.length >= 7);
    // Another name still fails, and says which one.
    const other = await run(context, nginx.url, ['--host', 'example.com']);
    assert.match(other.report.checks.find((c) => !c.ok)?.detail ?? '', 'host "example.com"');
    assert.equal(await listFiles(context.root), []);
  } finally {
    await nginx.stop();
  }
});

it('a balancer in front of two nginx with different roots: "repeat hits come from disk" fails', async (context) => {
  const other = path.join(context.dir, 'elsewhere');
  await fs.mkdir(other, { mode: 0o755 });
  const served = await startNginx({ root: context.root, upstream: context.app.url });
  const elsewhere = await startNginx({ root: other, upstream: context.app.url });
  // Round robin: the probe's first request reaches the nginx serving the root, its second the other.
  let turn = 0;
  const balancer = await startServer((req, res) => {
    const port = turn++ % 2 === 0 ? served.port : elsewhere.port;
    const upstream = http.request({ host: '127.0.0.1', port, path: req.url, method: req.method, headers: req.headers }, (reply) => {
      res.writeHead(reply.statusCode ?? 502, reply.headers);
      reply.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  try {
    const { code, report } = await run(context, balancer.url);
    assert.is(code, 1);
    assert.ok(report.checks.find((c) => c.check === 'nginx serves files stored in the root')?.ok, 'the first request was a disk hit');
    const repeat = report.checks.find((c) => c.check === 'repeat hits come from disk');
    assert.ok(repeat !== undefined && !repeat.ok, JSON.stringify(report.checks));
    assert.match(repeat?.fix ?? '', 'different roots');
  } finally {
    await balancer.close();
    await served.stop();
    await elsewhere.stop();
  }
});

doctor('nothing listening at --url', async (context) => {
  const { code, report } = await run(context, 'http://127.0.0.1:1');
  assert.is(code, 1);
  assert.match(report.checks.find((c) => !c.ok)?.fix ?? '', 'nothing answers');
});

doctor('bad arguments exit 2', async (context) => {
  assert.is((await runCli(['doctor', '--url', 'ftp://x', '--root', context.root])).code, 2);
  assert.is((await runCli(['doctor', '--root', context.root])).code, 2);
  const badHost = await runCli(['doctor', '--url', 'http://127.0.0.1:1', '--host', 'a b\r\nX: y', '--root', context.root]);
  assert.is(badHost.code, 2);
  assert.match(badHost.stderr, '--host');
  assert.is((await runCli(['doctor', '--url', 'http://127.0.0.1:1', '--root', path.join(context.dir, 'missing')])).code, 2);
});

doctor.run();
