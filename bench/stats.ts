/** Median, min and max of repeated measurements, and percentiles of samples. */
export function summarize(values: readonly number[]): { median: number; min: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b);
  return { median: percentile(sorted, 50), min: sorted[0] ?? NaN, max: sorted.at(-1) ?? NaN };
}

/** The p-th percentile of sorted samples (nearest rank). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/** A cell of the table: "median (min–max)". */
export function cell(values: readonly number[], digits = 0): string {
  const s = summarize(values);
  const f = (n: number): string => n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
  return values.length > 1 ? `${f(s.median)} (${f(s.min)}–${f(s.max)})` : f(s.median);
}
