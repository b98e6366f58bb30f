// How the bench reports write their figures: latencies (µs in, ms or s out), signed differences,
// ratios, and a target's pass/fail mark.

/** µs → "0.213 ms" / "12.4 ms" / "345.6 ms", always in ms. */
export function ms(us: number): string {
  const v = us / 1000;
  return `${v < 10 ? v.toFixed(3) : v < 100 ? v.toFixed(2) : v.toFixed(1)} ms`;
}

/** µs → as ms() below a second, "1.52 s" / "12.3 s" from there on. */
export function msOrS(us: number): string {
  const v = us / 1000;
  if (v >= 1000) return `${(v / 1000).toFixed(v >= 10_000 ? 1 : 2)} s`;
  return ms(us);
}

/** A difference in µs → "+0.213 ms" / "−1.20 ms". */
export function plus(us: number): string {
  return `${us >= 0 ? '+' : '−'}${ms(Math.abs(us))}`;
}

/** a ÷ b as "2.4×"; "—" when b is not a positive figure. */
export function times(a: number, b: number): string {
  if (!(b > 0) || !Number.isFinite(a)) return '—';
  const r = a / b;
  return `${r < 10 ? r.toFixed(2) : r.toFixed(1)}×`;
}

/** A target met or missed. */
export function mark(ok: boolean): string {
  return ok ? '✅' : '❌';
}
