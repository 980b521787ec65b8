/**
 * Options checked once: every bad option of the public functions is an `OptionError` (a `TypeError`)
 * naming the option as the API spells it, thrown before anything is touched.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createCache, exportSite, nginxConfig, type CacheOptions, type NginxConfigOptions } from '../src/index.js';
import { readAccessLog } from '../src/access-log.js';
import { resolveCacheOptions } from '../src/cache-options.js';
import { checkFleetOptions, type FleetOptions } from '../src/fleet/link.js';
import { OptionError, listOf, nonEmptyString, wholeNumber } from '../src/options.js';
import { removeDir, tempDir } from './helpers.js';

/** Calls `run` and returns the OptionError it threw; fails the test if it threw nothing or something else. */
async function optionError(run: () => unknown, what: string): Promise<OptionError> {
  try {
    await run();
  } catch (error) {
    assert.instance(error, OptionError, `${what}: ${String(error)}`);
    assert.instance(error, TypeError, `${what}: an OptionError is a TypeError`);
    return error as OptionError;
  }
  assert.unreachable(`${what} was accepted`);
  throw new Error('unreachable');
}

// ---

const checkers = suite('OptionError and the checkers');

checkers('the message names the option, says what it must be and shows the value', () => {
  const error = new OptionError('maxBodyBytes', 'a whole number from 1 up', 0);
  assert.is(error.option, 'maxBodyBytes');
  assert.is(error.expectation, 'a whole number from 1 up');
  assert.is(error.given, '0');
  assert.is(error.message, 'Expected `maxBodyBytes` to be a whole number from 1 up, not 0');
  assert.is(error.name, 'OptionError');
  const unshown = new OptionError('hosts', 'set with `multiSite`');
  assert.is(unshown.given, undefined);
  assert.is(unshown.message, 'Expected `hosts` to be set with `multiSite`');
  assert.is(new OptionError('root', 'a string', 'x'.repeat(200)).given, JSON.stringify(`${'x'.repeat(80)}...`), 'a long value is shortened');
});

checkers('wholeNumber: the fallback for undefined, the value from the minimum up, nothing else', async () => {
  assert.is(wholeNumber(undefined, 'n', 1, 7), 7);
  assert.is(wholeNumber(1, 'n', 1, 7), 1);
  assert.is(wholeNumber(0, 'n', 0, 7), 0);
  for (const bad of [0, -1, 1.5, Number.NaN, Infinity, 2 ** 53, '3', null]) {
    const error = await optionError(() => wholeNumber(bad, 'n', 1, 7), `wholeNumber(${String(bad)})`);
    assert.is(error.option, 'n');
  }
});

checkers('nonEmptyString and listOf', async () => {
  assert.is(nonEmptyString('a', 's', 'a name'), 'a');
  for (const bad of ['', undefined, 3]) await optionError(() => nonEmptyString(bad, 's', 'a name'), `nonEmptyString(${String(bad)})`);
  const isWord = (item: unknown): boolean => typeof item === 'string' && /^\w+$/.test(item);
  assert.equal(listOf(undefined, 'l', ['x'], isWord, 'words'), ['x']);
  assert.equal(listOf(['a', 'b'], 'l', [], isWord, 'words'), ['a', 'b']);
  const refused = await optionError(() => listOf(['a', 'b c', 'd e'], 'l', [], isWord, 'words'), 'a list with a bad item');
  assert.is(refused.given, '"b c"', 'the first refused item is shown');
  await optionError(() => listOf([undefined] as unknown as string[], 'l', [], isWord, 'words'), 'a list holding undefined');
  await optionError(() => listOf('a' as unknown as string[], 'l', [], isWord, 'words'), 'a string for a list');
});

checkers.run();

// ---

interface CacheContext {
  dir: string;
}

const cacheOptions = suite<CacheContext>('createCache: each bad option is an OptionError naming it, and nothing is created');
cacheOptions.before.each(async (context) => {
  context.dir = await tempDir();
});
cacheOptions.after.each(async (context) => removeDir(context.dir));

/** [the option the error must name, the options given (`root` added when not given)]. */
const badCacheOptions: Array<[option: string, options: Record<string, unknown>]> = [
  ['root', { root: '' }],
  ['root', { root: 42 }],
  ['root', { root: undefined }],
  ['maxBodyBytes', { maxBodyBytes: 0 }],
  ['maxBodyBytes', { maxBodyBytes: 1.5 }],
  ['maxBodyBytes', { maxBodyBytes: '10' }],
  ['bypassCookies', { bypassCookies: 'session' }],
  ['bypassCookies', { bypassCookies: ['session', ''] }],
  ['sweepIntervalMs', { sweepIntervalMs: -1 }],
  ['expiryCheckMs', { expiryCheckMs: Number.NaN }],
  ['refreshOrigin', { refreshOrigin: 'ftp://127.0.0.1' }],
  ['refreshOrigin', { refreshOrigin: 'http://127.0.0.1:3000/app' }],
  ['refreshOrigin', { refreshOrigin: 3000 }],
  ['maxRenderMs', { maxRenderMs: 0 }],
  ['safeMethods', { safeMethods: ['GET', 'BAD METHOD'] }],
  ['safeMethods', { safeMethods: 'GET' }],
  ['maxPendingBytes', { maxPendingBytes: 0 }],
  ['precompress', { precompress: ['gzip', 'zstd'] }],
  ['precompress', { precompress: 'gzip' }],
  ['hosts', { hosts: [] }],
  ['hosts', { hosts: ['Example.com'] }],
  ['hosts', { hosts: ['example.com', 'a b'] }],
  ['hosts', { multiSite: true }],
  ['fleet', { fleet: 'redis://127.0.0.1:6379' }],
  ['fleet.redis', { fleet: { redis: 'localhost:6379' } }],
  ['fleet.waitMs', { fleet: { redis: 'redis://127.0.0.1:6379', waitMs: -5 } }],
  ['fleet.maxSilenceMs', { fleet: { redis: 'redis://127.0.0.1:6379', maxSilenceMs: 0.5 } }],
];

for (const [option, given] of badCacheOptions) {
  cacheOptions(`${option}: ${JSON.stringify(given)}`, async (context) => {
    const root = path.join(context.dir, 'cache');
    const options = { root, ...given } as unknown as CacheOptions;
    const error = await optionError(() => createCache(options), JSON.stringify(given));
    assert.is(error.option, option, error.message);
    assert.match(error.message, `\`${option}\``);
    assert.equal(await fs.readdir(context.dir), [], 'no root or state directory created');
  });
}

cacheOptions('no options at all: the missing root is named', async () => {
  const error = await optionError(() => createCache(undefined as unknown as CacheOptions), 'createCache()');
  assert.is(error.option, 'root');
});

cacheOptions('the defaults, and given values kept as they are', () => {
  const defaults = resolveCacheOptions({ root: 'cache' });
  assert.equal({ ...defaults, bypassCookies: [...defaults.bypassCookies], safeMethods: [...defaults.safeMethods] }, {
    root: 'cache', maxBodyBytes: 10 * 1024 * 1024, bypassCookies: ['connect.sid', 'session', 'session.sig', 'sid', 'sessionid'],
    sweepIntervalMs: 0, expiryCheckMs: 250, refreshOrigin: undefined, maxRenderMs: 600_000,
    safeMethods: ['GET', 'HEAD', 'OPTIONS', 'TRACE'], maxPendingBytes: 64 * 1024 * 1024, precompress: [], hosts: undefined, multiSite: false,
  });
  const given = resolveCacheOptions({
    root: 'c', maxBodyBytes: 1, bypassCookies: [], sweepIntervalMs: 0, expiryCheckMs: 0, refreshOrigin: 'http://127.0.0.1:3000/',
    maxRenderMs: 1, safeMethods: ['GET'], maxPendingBytes: 1, precompress: ['br'], hosts: ['example.com', 'a.example:8080'], multiSite: true,
  });
  assert.is(given.refreshOrigin, 'http://127.0.0.1:3000');
  assert.equal([...given.hosts ?? []], ['example.com', 'a.example:8080']);
  assert.equal([given.maxBodyBytes, given.expiryCheckMs, given.maxRenderMs, given.maxPendingBytes, given.multiSite], [1, 0, 1, 1, true]);
});

cacheOptions.run();

// ---

const others = suite('the other public functions name their bad options too');

others('checkFleetOptions', async () => {
  assert.is(checkFleetOptions(undefined), undefined);
  const error = await optionError(() => checkFleetOptions({ redis: 'redis://:secret@127.0.0.1:6379', waitMs: -1 }), 'waitMs -1');
  assert.is(error.option, 'fleet.waitMs');
  const redis = await optionError(() => checkFleetOptions({ redis: 'http://:secret@127.0.0.1' } as FleetOptions), 'an http URL');
  assert.is(redis.option, 'fleet.redis');
  assert.not.match(redis.message, 'secret', 'a password in the URL is not repeated');
});

others('readAccessLog: prefixDepth and top, before the file is opened', async () => {
  for (const [option, given] of [['prefixDepth', { prefixDepth: -1 }], ['top', { top: 2.5 }]] as const) {
    const error = await optionError(() => readAccessLog('/nonexistent/access.log', given), option);
    assert.is(error.option, option);
  }
});

others('nginxConfig: each bad option named', async () => {
  const good = { root: '/srv/cache', upstream: 'http://127.0.0.1:3000' };
  const cases: Array<[option: string, given: Record<string, unknown>]> = [
    ['root', { root: '' }],
    ['root', { root: '/srv/a"; deny all; "' }],
    ['upstream', { upstream: 'http://127.0.0.1:3000/app' }],
    ['upstream', { upstream: undefined }],
    ['listen', { listen: '80; include /etc/passwd' }],
    ['serverName', { serverName: 'a b' }],
    ['bypassCookies', { bypassCookies: ['ok', 'a"b'] }],
    ['hosts', { hosts: ['Example.com'] }],
    ['multiSite', { multiSite: true }],
    ['accessLog', { accessLog: '/var/log/$x.log' }],
    ['accessLog', { accessLog: '' }],
  ];
  for (const [option, given] of cases) {
    const error = await optionError(() => nginxConfig({ ...good, ...given } as unknown as NginxConfigOptions), JSON.stringify(given));
    assert.is(error.option, option, error.message);
  }
  assert.ok(nginxConfig(good).includes('root "/srv/cache";'), 'the good options give a config');
});

others('exportSite: root and target', async () => {
  assert.is((await optionError(() => exportSite('', '/tmp/x'), 'an empty root')).option, 'root');
  assert.is((await optionError(() => exportSite('/tmp/x', ''), 'an empty target')).option, 'target');
});

others.run();
