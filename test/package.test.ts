/**
 * The package as a user gets it: `npm pack` (which builds on prepack), then the tarball installed into
 * a fresh project, where the command runs, the API imports as ESM and its types check under
 * `module: nodenext`. The install is offline (`npm ci --offline`): the project's lock is made from this
 * repository's, so every dependency comes from the npm cache that this checkout's own `npm ci` filled.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs/promises';
import path from 'node:path';
import { removeDir, repoRoot, runCommand, runNode, setUpSuite, tempDir, type CliResult } from './helpers.js';

interface Manifest {
  name: string;
  version: string;
  license: string;
  bin: Record<string, string>;
  files: string[];
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
  engines: Record<string, string>;
}

interface LockEntry {
  dev?: boolean;
  [key: string]: unknown;
}

interface Context {
  dir: string;
  project: string;
  tarball: string;
  packed: string[];
  manifest: Manifest;
}

/** npm without its update check (which would try the registry). */
function run(command: string, args: string[], cwd: string): Promise<CliResult> {
  return runCommand(command, args, { cwd, env: { npm_config_update_notifier: 'false' } });
}

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const npx = process.platform === 'win32' ? 'npx.cmd' : 'npx';

const pack = suite<Context>('the packed tarball, installed into a fresh project');
setUpSuite(pack, async (context) => {
  context.dir = await tempDir('prerender-pack-');
  context.manifest = JSON.parse(await fs.readFile(path.join(repoRoot, 'package.json'), 'utf8')) as Manifest;
  const packed = await run(npm, ['pack', '--json', '--pack-destination', context.dir], repoRoot);
  if (packed.code !== 0) throw new Error(`npm pack failed: ${packed.stderr}`);
  const [info] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as Array<{ filename: string; files: Array<{ path: string }> }>;
  if (info === undefined) throw new Error(`npm pack printed no report: ${packed.stdout}`);
  context.tarball = path.join(context.dir, info.filename);
  context.packed = info.files.map((file) => file.path).sort();

  // A project of a user's: the tarball as its one dependency, locked to the versions this checkout uses.
  context.project = path.join(context.dir, 'project');
  await fs.mkdir(context.project);
  const spec = `file:../${info.filename}`;
  await fs.writeFile(path.join(context.project, 'package.json'), JSON.stringify({ name: 'user-project', version: '1.0.0', private: true, type: 'module', dependencies: { [context.manifest.name]: spec } }));
  const lock = JSON.parse(await fs.readFile(path.join(repoRoot, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const packages: Record<string, unknown> = {
    '': { name: 'user-project', version: '1.0.0', dependencies: { [context.manifest.name]: spec } },
    [`node_modules/${context.manifest.name}`]: {
      version: context.manifest.version, resolved: spec, license: context.manifest.license,
      dependencies: context.manifest.dependencies, bin: context.manifest.bin, engines: context.manifest.engines,
    },
  };
  for (const [where, entry] of Object.entries(lock.packages)) if (where !== '' && entry.dev !== true) packages[where] = entry;
  await fs.writeFile(path.join(context.project, 'package-lock.json'), JSON.stringify({ name: 'user-project', version: '1.0.0', lockfileVersion: 3, requires: true, packages }));
  const installed = await run(npm, ['ci', '--offline', '--no-audit', '--no-fund'], context.project);
  if (installed.code !== 0) {
    throw new Error(`npm ci --offline of the tarball failed (run \`npm ci\` in the checkout first: it fills the npm cache): ${installed.stderr}`);
  }
}, async (context) => {
  if (context.dir !== undefined) await removeDir(context.dir);
});

pack('the tarball: LICENSE, built code with its sources for the maps, no tests, no install-time script', async (context) => {
  const { packed, manifest } = context;
  for (const file of ['LICENSE', 'README.md', 'package.json', 'bin/prerender.js', 'dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js', 'nginx/prerender.conf']) {
    assert.ok(packed.includes(file), `${file} is packed`);
  }
  assert.ok(packed.every((file) => !file.startsWith('test/') && !file.startsWith('fixtures/') && !file.startsWith('bench/')), 'nothing but the package');
  assert.match(await fs.readFile(path.join(repoRoot, 'LICENSE'), 'utf8'), new RegExp(`^${manifest.license} License\n`));
  // Every source map names sources that are in the tarball too.
  const maps = packed.filter((file) => file.endsWith('.map'));
  assert.ok(maps.length > 10, 'source maps are shipped');
  for (const map of maps) {
    const { sources } = JSON.parse(await fs.readFile(path.join(context.project, 'node_modules', manifest.name, map), 'utf8')) as { sources: string[] };
    for (const source of sources) {
      const shipped = path.posix.normalize(path.posix.join(path.posix.dirname(map), source));
      assert.ok(packed.includes(shipped), `${map} points at ${shipped}, which is packed`);
    }
  }
  const installedManifest = JSON.parse(await fs.readFile(path.join(context.project, 'node_modules', manifest.name, 'package.json'), 'utf8')) as Manifest;
  for (const script of ['preinstall', 'install', 'postinstall', 'prepare']) {
    assert.is(installedManifest.scripts[script], undefined, `no ${script} script runs on a user's install`);
  }
  assert.ok(installedManifest.scripts.prepack?.includes('build'), 'built on prepack');
});

pack('the command: npx prerender --version and the bin run from the installed package', async (context) => {
  const version = await run(npx, ['--offline', '--no-install', 'prerender', '--version'], context.project);
  assert.is(version.code, 0, version.stderr);
  assert.is(version.stdout, `${context.manifest.version}\n`);
  process.stdout.write(`\n  (package: npx prerender --version in a fresh project -> ${version.stdout.trim()})\n`);
  const bin = path.join(context.project, 'node_modules', '.bin', 'prerender');
  const config = await runNode([bin, 'nginx', '--root', '/srv/www/cache', '--upstream', 'http://127.0.0.1:3000', '--brotli', 'off'], { cwd: context.project });
  assert.is(config.code, 0, config.stderr);
  assert.match(config.stdout, 'try_files $uri/index.html $uri @app;');
  assert.match(config.stdout, 'proxy_set_header X-Prerender-Crawl "";');
});

pack('the API imports as ESM from the package name and works', async (context) => {
  const script = path.join(context.project, 'check.mjs');
  await fs.writeFile(script, `import { createCache, crawl, doctor, listEntries, nginxConfig, rollback, PrerenderError, DEFAULT_BYPASS_COOKIES } from '${context.manifest.name}';
import http from 'node:http';
const cache = createCache({ root: './cache', log: () => {} });
const server = http.createServer(cache.wrap((req, res) => { res.setHeader('Content-Type', 'text/html; charset=utf-8'); res.setHeader('Cache-Tag', 'a'); res.end('<p>hi</p>'); }));
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const reply = await fetch('http://127.0.0.1:' + server.address().port + '/page');
await reply.text();
server.close();
await cache.idle();
const purged = await cache.purge({ tags: ['a'] });
console.log(JSON.stringify({
  functions: [crawl, doctor, listEntries, nginxConfig, rollback].map((f) => typeof f),
  error: new PrerenderError('EUSAGE', 'x') instanceof Error,
  cookies: DEFAULT_BYPASS_COOKIES.length > 0,
  purged: purged.removed,
}));
`);
  const result = await runNode([script], { cwd: context.project });
  assert.is(result.code, 0, result.stderr);
  assert.equal(JSON.parse(result.stdout), {
    functions: ['function', 'function', 'function', 'function', 'function'],
    error: true,
    cookies: true,
    purged: ['page/index.html'],
  });
});

pack('the types check under module nodenext with this repository\'s TypeScript', async (context) => {
  await fs.writeFile(path.join(context.project, 'check.ts'), `import http from 'node:http';
import { createCache, crawl, PrerenderError, type Cache, type CacheOptions, type CrawlReport, type PurgeResult } from '${context.manifest.name}';

const options: CacheOptions = { root: './cache', precompress: ['gzip'], hosts: ['www.example.com'] };
const cache: Cache = createCache(options);
http.createServer(cache.wrap((req, res) => res.end()));
const purged: Promise<PurgeResult> = cache.purge({ tags: ['feed'] }, { refresh: { origin: 'http://127.0.0.1:3000' } });
const report: Promise<CrawlReport> = crawl({ source: 'urls.txt', origin: 'http://127.0.0.1:3000', root: './cache' });
const code: string = new PrerenderError('EUSAGE', 'x').code;
// @ts-expect-error the types are real: maxBodyBytes is a number
createCache({ root: './cache', maxBodyBytes: 'big' });
// @ts-expect-error precompress names encodings
createCache({ root: './cache', precompress: ['zstd'] });
export { purged, report, code };
`);
  await fs.writeFile(path.join(context.project, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, noEmit: true,
      verbatimModuleSyntax: true, skipLibCheck: false,
      typeRoots: [path.join(repoRoot, 'node_modules', '@types')], types: ['node'],
    },
    files: ['check.ts'],
  }));
  const result = await runNode([path.join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: context.project });
  assert.is(result.code, 0, result.stdout + result.stderr);
});

pack.run();
