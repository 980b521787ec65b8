export * from './cache.js';
export * from './errors.js';
export * from './nginx-config.js';
export type { PurgeOptions, PurgeResult, PurgeSelector, RefreshOptions } from './purge.js';
export type { SweepOptions, SweepResult } from './sweep.js';
export { DEFAULT_BYPASS_COOKIES } from './policy.js';
export { STATE_DIR, toCachePath, type CachePath, type CachePathResult, type PathRefusal } from './url-path.js';
export type { Logger } from './log.js';
