import { NGINX_MIME_TYPES } from './mime-table.js';

/**
 * Media types that the generated nginx config serves with `; charset=utf-8` (its `charset_types`).
 * A stored response of one of these types must decode the same way under UTF-8; any other type must
 * carry no charset at all, because nginx will not add one.
 */
export const UTF8_TYPES: readonly string[] = [
  'text/html', 'text/css', 'text/xml', 'text/plain', 'text/mathml', 'text/vnd.sun.j2me.app-descriptor',
  'text/vnd.wap.wml', 'text/x-component', 'application/javascript', 'application/json',
  'application/atom+xml', 'application/rss+xml', 'application/xhtml+xml', 'application/xspf+xml',
  'image/svg+xml',
];

const utf8Types = new Set(UTF8_TYPES);

/** The media type nginx's `mime.types` gives a file name, or undefined when it lists no such extension. */
export function mediaTypeForName(name: string): string | undefined {
  const dot = name.lastIndexOf('.');
  if (dot < 0 || dot === name.length - 1) return undefined;
  // nginx lowercases the extension before its types lookup, so `/A.CSS` is text/css.
  const extension = name.slice(dot + 1).toLowerCase();
  return Object.hasOwn(NGINX_MIME_TYPES, extension) ? NGINX_MIME_TYPES[extension] : undefined;
}

export function isUtf8Type(mediaType: string): boolean {
  return utf8Types.has(mediaType);
}

export interface ContentType {
  /** `type/subtype`, lowercased. */
  mediaType: string;
  /** The `charset` parameter, lowercased and unquoted, if present. */
  charset: string | undefined;
  /** True when a parameter other than charset is present (nginx cannot reproduce it). */
  otherParameters: boolean;
}

const token = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Parses a Content-Type header value; undefined when it is not a well-formed media type. */
export function parseContentType(value: string): ContentType | undefined {
  const [head = '', ...params] = value.split(';');
  const mediaType = head.trim().toLowerCase();
  const slash = mediaType.indexOf('/');
  if (slash <= 0 || !token.test(mediaType.slice(0, slash)) || !token.test(mediaType.slice(slash + 1))) {
    return undefined;
  }
  let charset: string | undefined;
  let otherParameters = false;
  for (const param of params) {
    if (param.trim() === '') continue;
    const eq = param.indexOf('=');
    if (eq < 0) return undefined;
    const name = param.slice(0, eq).trim().toLowerCase();
    let paramValue = param.slice(eq + 1).trim();
    if (paramValue.length >= 2 && paramValue.startsWith('"') && paramValue.endsWith('"')) {
      paramValue = paramValue.slice(1, -1);
    }
    if (name === 'charset' && charset === undefined) charset = paramValue.toLowerCase();
    else otherParameters = true;
  }
  return { mediaType, charset, otherParameters };
}

export function isUtf8Charset(charset: string): boolean {
  return charset === 'utf-8' || charset === 'utf8';
}
