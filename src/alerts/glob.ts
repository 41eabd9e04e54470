/** Shell-style globs (`*`, `?`) for silences and team filters; everything else is literal. */

const cache = new Map<string, RegExp>();

/** True when `value` matches `pattern` ("prod-*", "idle_in_*", "?"). */
export function globMatch(pattern: string, value: string): boolean {
  let re = cache.get(pattern);
  if (re === undefined) {
    const source = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
    re = new RegExp(`^${source}$`, 's');
    cache.set(pattern, re);
  }
  return re.test(value);
}

/** True when the list is empty or absent (no filter) or one glob matches. */
export function anyGlob(patterns: readonly string[] | undefined, value: string): boolean {
  return patterns === undefined || patterns.length === 0 || patterns.some((pattern) => globMatch(pattern, value));
}
