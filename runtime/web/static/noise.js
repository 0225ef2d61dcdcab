// The noise contract, version 2 (the README and cgan.runtime.noise give the definition): the latent
// vector of image k of a run with seed S is Philox4x32-10 of (block, k) under the key S, four uniforms
// per block, Box-Muller in doubles, each value rounded to float32. cgan-run draws the same vectors.

export const NOISE_VERSION = 2;

const M0 = 0xd2511f53, M1 = 0xcd9e8d57, W0 = 0x9e3779b9, W1 = 0xbb67ae85;
const TWO_PI = 2 * Math.PI;
const INV_2_32 = 1 / 4294967296;

// High 32 bits of the 64-bit product of two uint32 (doubles hold 53 bits, so multiply 16-bit halves).
function mulhi(a, b) {
  const al = a & 0xffff, ah = a >>> 16, bl = b & 0xffff, bh = b >>> 16;
  const hl = ah * bl, lh = al * bh;
  const mid = ((al * bl) >>> 16) + (hl & 0xffff) + lh; // < 2^33: exact
  return (ah * bh + (hl >>> 16) + Math.floor(mid / 65536)) >>> 0;
}

// Philox4x32-10: counter [c0, c1, c2, c3], key [k0, k1] (uint32 numbers) -> four uint32.
export function philox4x32(c, k, rounds = 10) {
  let [c0, c1, c2, c3] = c.map((v) => v >>> 0);
  let [k0, k1] = k.map((v) => v >>> 0);
  for (let r = 0; r < rounds; r++) {
    if (r) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const hi0 = mulhi(M0, c0), lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi(M1, c2), lo1 = Math.imul(M1, c2) >>> 0;
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
  }
  return [c0, c1, c2, c3];
}

function words(value, name) {
  const v = BigInt(value);
  if (v < 0n || v >= 1n << 64n) throw new RangeError(`${name} must be an integer in [0, 2^64), got ${value}`);
  return [Number(v & 0xffffffffn), Number(v >> 32n)];
}

// Rows start .. start+n-1 of the noise of `seed`, as one Float32Array of n * zDim values.
// `seed` and `start` may be numbers, BigInts or decimal strings.
export function noise(seed, start, n, zDim) {
  const key = words(seed, "seed");
  const first = BigInt(start);
  const out = new Float32Array(n * zDim);
  const blocks = Math.ceil(zDim / 4);
  for (let i = 0; i < n; i++) {
    const [klo, khi] = words(first + BigInt(i), "image index");
    for (let b = 0; b < blocks; b++) {
      const x = philox4x32([b, klo, khi, 0], key);
      const u = x.map((w) => (w + 0.5) * INV_2_32);
      const r0 = Math.sqrt(-2 * Math.log(u[0])), t0 = TWO_PI * u[1];
      const r1 = Math.sqrt(-2 * Math.log(u[2])), t1 = TWO_PI * u[3];
      const z = [r0 * Math.cos(t0), r0 * Math.sin(t0), r1 * Math.cos(t1), r1 * Math.sin(t1)];
      for (let j = 0; j < 4 && 4 * b + j < zDim; j++) out[i * zDim + 4 * b + j] = z[j];
    }
  }
  return out;
}
