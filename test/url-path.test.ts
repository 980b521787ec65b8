import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { REFUSAL_MESSAGES, prefixCovers, resolveInRoot, toCachePath, type PathRefusal } from '../src/url-path.js';

const mapping = suite('toCachePath: canonical paths map to the file nginx looks up');

const files: Array<[target: string, file: string, mediaType: string]> = [
  ['/', 'index.html', 'text/html'],
  ['/a', 'a/index.html', 'text/html'],
  ['/a/', 'a/index.html', 'text/html'],
  ['/a/index.html', 'a/index.html', 'text/html'],
  ['/a/b/c', 'a/b/c/index.html', 'text/html'],
  ['/a/b/c/', 'a/b/c/index.html', 'text/html'],
  ['/some%20thing', 'some thing/index.html', 'text/html'],
  ['/some thing', 'some thing/index.html', 'text/html'],
  ['/caf%C3%A9', 'café/index.html', 'text/html'],
  ['/caf%c3%a9', 'café/index.html', 'text/html'],
  ['/café', 'café/index.html', 'text/html'],
  ['/%61', 'a/index.html', 'text/html'],
  ['/a..b', 'a..b/index.html', 'text/html'],
  ['/v1.2', 'v1.2/index.html', 'text/html'],
  ['/a.', 'a./index.html', 'text/html'],
  ['/style.css', 'style.css', 'text/css'],
  ['/STYLE.CSS', 'STYLE.CSS', 'text/css'],
  ['/data.json', 'data.json', 'application/json'],
  ['/feed.xml', 'feed.xml', 'text/xml'],
  ['/do..ts.txt', 'do..ts.txt', 'text/plain'],
  ['/a+b', 'a+b/index.html', 'text/html'],
  ['/a%2Bb', 'a+b/index.html', 'text/html'],
  ['/back\\slash', 'back\\slash/index.html', 'text/html'],
  ['/a%5Cb', 'a\\b/index.html', 'text/html'],
  ['/100%25', '100%/index.html', 'text/html'],
  ['/a%252F', 'a%2F/index.html', 'text/html'],
  ['/.well-known/security.txt', '.well-known/security.txt', 'text/plain'],
  ['/node.js/intro', 'node.js/intro/index.html', 'text/html'],
];

for (const [target, file, mediaType] of files) {
  mapping(`${target} -> ${file}`, () => {
    const result = toCachePath(target);
    assert.ok(result.ok, `refused: ${result.ok ? '' : result.reason}`);
    if (!result.ok) return;
    assert.is(result.value.file, file);
    assert.is(result.value.mediaType, mediaType);
  });
}

mapping('/x/ and /x/index.html name the same file', () => {
  const a = toCachePath('/x/');
  const b = toCachePath('/x/index.html');
  assert.ok(a.ok && b.ok);
  if (a.ok && b.ok) assert.is(a.value.file, b.value.file);
});

mapping('every printable ASCII byte maps alike written raw or percent-encoded (the fast path agrees)', () => {
  for (let code = 0x20; code <= 0x7e; code++) {
    const char = String.fromCharCode(code);
    if ('/?#%'.includes(char)) continue;
    const encoded = `%${code.toString(16).toUpperCase().padStart(2, '0')}`;
    for (const [raw, spelled] of [[`/a${char}b`, `/a${encoded}b`], [`/${char}`, `/${encoded}`], [`/x/${char}${char}.css`, `/x/${encoded}${encoded}.css`]] as const) {
      assert.equal(toCachePath(raw), toCachePath(spelled), `${raw} vs ${spelled}`);
    }
  }
  assert.equal(toCachePath('/a/./b'), { ok: false, reason: 'dot-segment' });
  assert.equal(toCachePath('/a/%2E/b'), { ok: false, reason: 'dot-segment' });
  assert.equal(toCachePath('/a\u0001b'), { ok: false, reason: 'control-byte' });
  assert.equal(toCachePath('/a\u007fb'), { ok: false, reason: 'control-byte' });
});

mapping.run();

// ---

const refusals = suite('toCachePath: non-canonical or unstorable paths are refused');

const refused: Array<[target: string, reason: PathRefusal]> = [
  ['', 'not-origin-form'],
  ['a/b', 'not-origin-form'],
  ['*', 'not-origin-form'],
  ['http://evil.example/x', 'not-origin-form'],
  ['/a?b=1', 'query-string'],
  ['/a?', 'query-string'],
  ['/a#frag', 'query-string'],
  ['/..', 'dot-segment'],
  ['/../etc/passwd', 'dot-segment'],
  ['/a/../../b', 'dot-segment'],
  ['/a/./b', 'dot-segment'],
  ['/.', 'dot-segment'],
  ['/%2e%2e/x', 'dot-segment'],
  ['/%2E%2E/x', 'dot-segment'],
  ['/.%2e/x', 'dot-segment'],
  ['/a/%2e', 'dot-segment'],
  ['/a%2Fb', 'encoded-slash'],
  ['/a%2fb', 'encoded-slash'],
  ['/..%2Fetc', 'encoded-slash'],
  ['/a//b', 'empty-segment'],
  ['//a', 'empty-segment'],
  ['/a%00b', 'control-byte'],
  ['/a\u0000b', 'control-byte'],
  ['/a%0Ab', 'control-byte'],
  ['/a%7Fb', 'control-byte'],
  ['/a%zz', 'bad-percent-encoding'],
  ['/a%', 'bad-percent-encoding'],
  ['/a%4', 'bad-percent-encoding'],
  ['/%C3', 'invalid-utf8'],
  ['/%FF', 'invalid-utf8'],
  ['/%C0%AF', 'invalid-utf8'],
  ['/%E0%80%AF', 'invalid-utf8'],
  [`/${'a'.repeat(256)}`, 'name-too-long'],
  [`/${'é'.repeat(128)}`, 'name-too-long'],
  ['/.prerender/tmp/x', 'state-directory'],
  ['/.prerender', 'state-directory'],
  ['/x.css/', 'ambiguous-index'],
  ['/x.css/index.html', 'ambiguous-index'],
];

for (const [target, reason] of refused) {
  refusals(`${JSON.stringify(target).slice(0, 60)} is refused: ${reason}`, () => {
    const result = toCachePath(target);
    assert.is(result.ok, false);
    if (!result.ok) assert.is(result.reason, reason);
  });
}

refusals('a 255-byte segment is accepted', () => {
  assert.ok(toCachePath(`/${'a'.repeat(255)}`).ok);
});

refusals('every refusal has a message', () => {
  for (const [, reason] of refused) assert.type(REFUSAL_MESSAGES[reason], 'string');
});

refusals.run();

// ---

const containment = suite('resolveInRoot: containment on resolved paths');

containment('a file inside the root resolves', () => {
  assert.is(resolveInRoot('/srv/cache', 'a/index.html'), path.join('/srv/cache', 'a', 'index.html'));
});

containment('escapes, the root itself and the state directory are refused', () => {
  for (const file of ['../x', '../cache-evil/x', 'a/../../x', '/etc/passwd', '', '.', '.prerender/tmp/x']) {
    assert.is(resolveInRoot('/srv/cache', file), undefined, file);
  }
});

containment('a sibling directory sharing the prefix is not inside', () => {
  assert.is(resolveInRoot('/srv/cache', '../cache-evil/index.html'), undefined);
});

containment('a name starting with two dots is inside', () => {
  assert.is(resolveInRoot('/srv/cache', '..foo/index.html'), path.join('/srv/cache', '..foo', 'index.html'));
});

containment('paths over PATH_MAX are refused', () => {
  const deep = Array.from({ length: 20 }, () => 'x'.repeat(250)).join('/');
  assert.is(resolveInRoot('/srv/cache', deep), undefined);
});

containment.run();

// ---

const prefixes = suite('which files a purge prefix covers');

prefixes('a directory\'s index.html by the directory\'s URL or its whole name; other files by their path', () => {
  const cases: Array<[prefix: string, file: string, covered: boolean]> = [
    ['/', 'index.html', true], ['/in', 'index.html', false], ['/index', 'index.html', false], ['/index.html', 'index.html', true],
    ['/blog', 'blog/index.html', true], ['/blog/', 'blog/index.html', true], ['/blog/ind', 'blog/index.html', false],
    ['/blog/index.html', 'blog/index.html', true], ['/blo', 'blog/post/index.html', true], ['/blog/p', 'blog/post/index.html', true],
    ['/s', 'style.css', true], ['/style.css', 'style.css', true], ['/style.cssx', 'style.css', false], ['/in', 'index.htmlx', true],
  ];
  for (const [prefix, file, covered] of cases) assert.is(prefixCovers(prefix, file), covered, `${prefix} ${file}`);
});

prefixes.run();
