import { PrerenderError } from './errors.js';

/** Validates an origin URL and returns it as `scheme://host[:port]`. */
export function parseOrigin(origin: string, option = '--origin'): string {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    throw new PrerenderError('EUSAGE', `${option} ${JSON.stringify(origin)} is not a URL (e.g. http://127.0.0.1:3000)`, { input: origin });
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.username !== '' || url.password !== ''
    || url.search !== '' || url.hash !== '' || (url.pathname !== '/' && url.pathname !== '')) {
    throw new PrerenderError('EUSAGE', `${option} ${JSON.stringify(origin)} must be http(s)://host[:port] with no path`, { input: origin });
  }
  return `${url.protocol}//${url.host}`;
}
