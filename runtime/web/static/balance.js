// The balance plan, as cgan-run --balance plans it (cgan/runtime/balance.py): generated images per stage
// for the real counts typed in. Rules: "largest" (every stage to the largest stage's count), "ratio"
// (floor(R x real), exact for a decimal R) and "target" (every stage to N images). Stage s's images are
// k = 0 .. n-1 of (model, seed, s), the files cgan-run --balance writes.

export class PlanError extends Error {}

function whole(text, what, lo = 0n) {
  const t = String(text).trim();
  if (!/^\d+$/.test(t) || BigInt(t) < lo) throw new PlanError(`${what} must be a whole number >= ${lo}, got "${text}"`);
  return BigInt(t);
}

// A decimal string -> [numerator, denominator] as BigInts, exactly ("0.29" -> [29n, 100n]).
function decimal(text) {
  const t = String(text).trim();
  const m = /^(\d*)(?:\.(\d*))?$/.exec(t);
  if (!m || (m[1] === "" && !m[2])) throw new PlanError(`Ratio must be a number >= 0, got "${text}"`);
  const frac = m[2] || "";
  return [BigInt((m[1] || "0") + frac), 10n ** BigInt(frac.length)];
}

// real: counts as strings or numbers; rule: "largest" | "ratio" | "target"; value: R or N (ignored for "largest").
export function planCounts(real, rule, value) {
  const counts = real.map((c, i) => whole(c, `Real images of stage ${i}`));
  let want;
  if (rule === "ratio") {
    const [num, den] = decimal(value);
    want = counts.map((c) => (num * c) / den); // BigInt division floors for non-negative values
  } else if (rule === "target") {
    const n = whole(value, "Target", 1n);
    want = counts.map((c) => (n > c ? n - c : 0n));
  } else if (rule === "largest") {
    const top = counts.reduce((a, b) => (b > a ? b : a), 0n);
    want = counts.map((c) => top - c);
  } else {
    throw new PlanError(`unknown rule "${rule}"; expected largest, ratio or target`);
  }
  return want.map(Number);
}
