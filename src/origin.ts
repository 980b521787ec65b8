import { OptionError } from './options.js';

/**
 * Validates an origin URL and returns it as `scheme://host[:port]`. A bad one is an OptionError
 * naming `option` (the caller's name for it: `origin`, `upstream`, `refreshOrigin`).
 */
export function parseOrigin(origin: unknown, option = 'origin'): string {
  const expectation = 'an http(s)://host[:port] URL with no path (e.g. http://127.0.0.1:3000)';
  if (typeof origin !== 'string') throw new OptionError(option, expectation, origin);
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    throw new OptionError(option, expectation, origin);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.username !== '' || url.password !== ''
    || url.search !== '' || url.hash !== '' || (url.pathname !== '/' && url.pathname !== '')) {
    throw new OptionError(option, expectation, origin);
  }
  return `${url.protocol}//${url.host}`;
}
