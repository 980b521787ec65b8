/**
 * Checks of the options the public functions take. Each failure is an `OptionError`, a `TypeError`
 * naming the option (`option`, as the API spells it, e.g. `maxBodyBytes` or `fleet.redis`), so the
 * CLI can say which flag was wrong instead of which property.
 */

export class OptionError extends TypeError {
  /** The option as the API names it. */
  readonly option: string;

  constructor(option: string, expectation: string, value?: unknown) {
    const got = arguments.length >= 3 ? `, not ${describe(value)}` : '';
    super(`Expected \`${option}\` to be ${expectation}${got}`);
    this.name = 'OptionError';
    this.option = option;
  }
}

/** `value`, or `fallback` when undefined; a whole number from `minimum` up. */
export function wholeNumber(value: unknown, option: string, minimum: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < minimum) {
    throw new OptionError(option, `a whole number from ${minimum} up`, value);
  }
  return value;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return String(value);
  return Array.isArray(value) ? 'an array' : typeof value;
}
