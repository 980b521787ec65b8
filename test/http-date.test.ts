/**
 * HTTP-date parsing (RFC 9110 §5.6.7): the three forms exactly, everything else null.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseHttpDate } from '../src/http-date.js';

const expected = Date.UTC(1994, 10, 6, 8, 49, 37);
const in2026 = Date.UTC(2026, 11, 2);

// ---

const forms = suite('the three forms');

forms('IMF-fixdate, RFC 850 and asctime give the same instant', () => {
  assert.is(parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT'), expected);
  assert.is(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT', in2026), expected);
  assert.is(parseHttpDate('Sun Nov  6 08:49:37 1994'), expected);
  assert.is(parseHttpDate('Sun Nov 06 08:49:37 1994'), expected);
});

forms('RFC 850 two-digit years: more than 50 years ahead is the previous century', () => {
  assert.is(parseHttpDate('Thursday, 18-Aug-50 10:00:00 GMT', in2026), Date.UTC(2050, 7, 18, 10));
  assert.is(parseHttpDate('Friday, 18-Aug-76 10:00:00 GMT', in2026), Date.UTC(2076, 7, 18, 10));
  assert.is(parseHttpDate('Wednesday, 18-Aug-77 10:00:00 GMT', in2026), Date.UTC(1977, 7, 18, 10));
  assert.is(parseHttpDate('Monday, 01-Jan-00 00:00:00 GMT', in2026), Date.UTC(2000, 0, 1));
  // Seen from 2090, `10` is 2110 (20 years ahead), not 2010.
  assert.is(parseHttpDate('Monday, 01-Jan-10 00:00:00 GMT', Date.UTC(2090, 0, 1)), Date.UTC(2110, 0, 1));
});

forms('dates past 2038 and a leap second', () => {
  assert.is(parseHttpDate('Fri, 01 Jan 2100 00:00:00 GMT'), Date.UTC(2100, 0, 1));
  assert.is(parseHttpDate('Wed, 31 Dec 2036 23:59:60 GMT'), Date.UTC(2036, 11, 31, 23, 59, 59));
});

forms.run();

// ---

const invalid = suite('invalid dates');

invalid('each malformed spelling is null', () => {
  for (const text of [
    '', '0', '-1', '2', 'garbage', '1994-11-06T08:49:37Z', 'Nov 1994',
    'sun, 06 Nov 1994 08:49:37 GMT', // weekday case
    'Sun, 06 nov 1994 08:49:37 GMT', // month case
    'Sun, 06 Nov 1994 08:49:37 gmt', // zone case
    'Sun, 06 Nov 1994 08:49:37 UTC', // another zone
    'Sun, 06 Nov 1994 08:49:37 +0000',
    'Sun, 06 Nov 1994 08:49:37', // no zone
    'Sun 06 Nov 1994 08:49:37 GMT', // no comma
    'Sun,  06 Nov 1994 08:49:37 GMT', // two spaces
    'Sun, 6 Nov 1994 08:49:37 GMT', // one-digit day
    'Sun, 06 Nov 1994 8:49:37 GMT', // one-digit hour
    'Sun, 06 Nov 94 08:49:37 GMT', // two-digit year in IMF-fixdate
    'Sun, 06 Nov 1994 08.49.37 GMT', // time periods
    'Sun, 06 Nov 1994 24:00:00 GMT', 'Sun, 06 Nov 1994 08:60:00 GMT', 'Sun, 06 Nov 1994 08:49:61 GMT',
    'Sun, 31 Feb 1994 08:49:37 GMT', 'Sun, 00 Nov 1994 08:49:37 GMT',
    'Sunday, 06-Nov-1994 08:49:37 GMT', // RFC 850 with four digits
    'Sun, 06-Nov-94 08:49:37 GMT', // RFC 850 with a short weekday
    'Sun Nov 6 08:49:37 1994', // asctime without the padding space
    'Sun Nov  6 08:49:37 1994 GMT',
    ' Sun, 06 Nov 1994 08:49:37 GMT', 'Sun, 06 Nov 1994 08:49:37 GMT, Sun, 06 Nov 1994 08:49:37 GMT',
    'Xyz, 06 Nov 1994 08:49:37 GMT',
  ]) {
    assert.is(parseHttpDate(text, in2026), null, text);
  }
});

invalid.run();
