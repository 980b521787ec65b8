/**
 * HTTP-date parsing as RFC 9110 §5.6.7 defines it, strictly: `Date.parse` accepts almost anything
 * (`"2"`, `"Nov 1994"`, local times), and a cache that reads a garbled `Expires` as a real date keeps
 * a page the origin meant to be stale. Three forms are read, names and spacing exactly as the grammar
 * has them (names are case-sensitive, only `GMT`):
 *
 *   IMF-fixdate  Sun, 06 Nov 1994 08:49:37 GMT
 *   RFC 850      Sunday, 06-Nov-94 08:49:37 GMT   (obsolete; a two-digit year)
 *   asctime      Sun Nov  6 08:49:37 1994         (obsolete; day padded with a space)
 *
 * The weekday is checked as a name but not against the date: the RFC does not ask for it, and a
 * mismatch says nothing about which of the two the sender meant.
 */

const DAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'] as const;
const LONG_DAYS = ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday'] as const;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'] as const;

const MONTH = `(${MONTHS.join('|')})`;
const TIME = '(\\d{2}):(\\d{2}):(\\d{2})';
const imfFixdate = new RegExp(`^(?:${DAYS.join('|')}), (\\d{2}) ${MONTH} (\\d{4}) ${TIME} GMT$`);
const rfc850 = new RegExp(`^(?:${LONG_DAYS.join('|')}), (\\d{2})-${MONTH}-(\\d{2}) ${TIME} GMT$`);
const asctime = new RegExp(`^(?:${DAYS.join('|')}) ${MONTH} ([ \\d]\\d) ${TIME} (\\d{4})$`);

/**
 * Epoch ms of an HTTP-date, or null when the text is not one (the caller decides what an invalid date
 * means: for `Expires`, already expired). `now` only matters for RFC 850's two-digit year.
 */
export function parseHttpDate(text: string, now = Date.now()): number | null {
  let match = imfFixdate.exec(text);
  if (match !== null) return build(match[3], match[2], match[1], match[4], match[5], match[6]);
  match = rfc850.exec(text);
  if (match !== null) {
    const year = fullYear(Number(match[3]), now);
    return build(String(year), match[2], match[1], match[4], match[5], match[6]);
  }
  match = asctime.exec(text);
  if (match !== null) {
    // date3: the day as two digits, or a space and one digit.
    return build(match[6], match[1], (match[2] ?? '').trim(), match[3], match[4], match[5]);
  }
  return null;
}

/**
 * RFC 9110 §5.6.7: a two-digit year that would be more than 50 years in the future is the most recent
 * past year with those digits. In 2026, `50` is 2050 and `94` is 1994; in 2090, `10` is 2110.
 */
function fullYear(twoDigits: number, now: number): number {
  const current = new Date(now).getUTCFullYear();
  const candidate = current - (current % 100) + twoDigits;
  return candidate > current + 50 ? candidate - 100 : candidate < current - 49 ? candidate + 100 : candidate;
}

function build(year: string | undefined, month: string | undefined, day: string | undefined, hour: string | undefined, minute: string | undefined, second: string | undefined): number | null {
  const y = Number(year);
  const m = MONTHS.indexOf(month as typeof MONTHS[number]);
  const d = Number(day);
  const h = Number(hour);
  const min = Number(minute);
  const s = Number(second);
  if (m < 0 || d < 1 || h > 23 || min > 59 || s > 60) return null;
  // A leap second (`:60`) is the last moment of its minute; JavaScript time has none.
  const at = Date.UTC(y, m, d, h, min, Math.min(s, 59));
  // Date.UTC rolls 31 Feb over into March: a day the month does not have is no date.
  if (new Date(at).getUTCDate() !== d) return null;
  // Years 0-99 are taken by Date.UTC as 1900-1999.
  const fixed = y < 100 ? new Date(at).setUTCFullYear(y) : at;
  return fixed;
}
