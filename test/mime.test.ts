import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync } from 'node:fs';
import { NGINX_MIME_TYPES } from '../src/mime-table.js';
import { mediaTypeForName, parseContentType } from '../src/mime.js';
import { nginxAvailable } from './helpers.js';

const table = suite('the embedded mime table');
const installed = '/etc/nginx/mime.types';

(nginxAvailable() && existsSync(installed) ? table : table.skip)('matches the installed nginx mime.types exactly', () => {
  const text = readFileSync(installed, 'utf8');
  const body = text.slice(text.indexOf('{') + 1, text.lastIndexOf('}'));
  const parsed: Record<string, string> = {};
  for (const line of body.split(';')) {
    const [type, ...extensions] = line.trim().split(/\s+/);
    if (type === undefined || extensions.length === 0) continue;
    for (const extension of extensions) parsed[extension] = type;
  }
  assert.equal({ ...NGINX_MIME_TYPES }, parsed);
});

table('extensions are looked up case-insensitively, only after the last dot', () => {
  assert.is(mediaTypeForName('a.CSS'), 'text/css');
  assert.is(mediaTypeForName('a.tar.gz'), undefined);
  assert.is(mediaTypeForName('v1.2'), undefined);
  assert.is(mediaTypeForName('a.'), undefined);
  assert.is(mediaTypeForName('noext'), undefined);
  assert.is(mediaTypeForName('x.constructor'), undefined);
  assert.is(mediaTypeForName('x.__proto__'), undefined);
});

table('Content-Type parsing', () => {
  assert.equal(parseContentType('Text/HTML; Charset="UTF-8"'), { mediaType: 'text/html', charset: 'utf-8', otherParameters: false });
  assert.equal(parseContentType('application/json'), { mediaType: 'application/json', charset: undefined, otherParameters: false });
  assert.equal(parseContentType('text/html; charset=utf-8; q=1')?.otherParameters, true);
  assert.is(parseContentType(''), undefined);
  assert.is(parseContentType('html'), undefined);
  assert.is(parseContentType('text/html; charset'), undefined);
});

table.run();
