/**
 * Matches `text` against a glob in which only `*` is special (any run of characters, possibly
 * empty). No regular expression is built, so a hostile pattern cannot cause catastrophic
 * backtracking: the literal pieces between stars are found left to right with `indexOf`, which is
 * correct for star-only globs and costs O(|pattern| × |text|) at worst.
 *
 * @param pattern - the glob; its limits (length, star count) are checked when caveats are compiled
 * @param text - the value to match
 * @returns whether the whole of `text` matches
 * @example
 * ```ts
 * globMatch("*@acme.com", "bob@acme.com") // true
 * globMatch("re_*_eur", "re_1_usd") // false
 * ```
 */
export function globMatch(pattern: string, text: string): boolean {
  const pieces = pattern.split("*");
  if (pieces.length === 1) return pattern === text;
  const first = pieces[0] as string;
  const last = pieces[pieces.length - 1] as string;
  if (first.length + last.length > text.length) return false;
  if (!text.startsWith(first) || !text.endsWith(last)) return false;
  let position = first.length;
  const end = text.length - last.length;
  for (let index = 1; index < pieces.length - 1; index++) {
    const piece = pieces[index] as string;
    if (piece.length === 0) continue;
    const found = text.indexOf(piece, position);
    if (found < 0 || found + piece.length > end) return false;
    position = found + piece.length;
  }
  return true;
}

/**
 * Counts the wildcards of a glob.
 *
 * @param pattern - the glob
 * @returns the number of `*` characters
 * @example
 * ```ts
 * globWildcards("a*b*") // 2
 * ```
 */
export function globWildcards(pattern: string): number {
  let count = 0;
  for (const char of pattern) if (char === "*") count++;
  return count;
}
