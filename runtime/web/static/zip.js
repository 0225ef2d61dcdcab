// Files for download without any library: 8-bit PNGs (as cgan-run writes them: grey, one byte per pixel)
// and a ZIP archive of them (stored, not compressed again: PNG data is already deflated).

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(bytes, crc = 0) {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

function u32be(v) { return new Uint8Array([v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff]); }

function chunk(tag, data) {
  const t = new TextEncoder().encode(tag);
  return concat([u32be(data.length), t, data, u32be(crc32(data, crc32(t)))]);
}

async function deflate(bytes) {
  // zlib format ("deflate" in the Compression Streams API), which is what a PNG's IDAT holds
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

// Grey pixels (Uint8 array, size x size) -> PNG bytes, 8-bit greyscale, with tEXt chunks.
export async function greyPng(px, size, text = {}) {
  const rows = new Uint8Array(size * (size + 1)); // filter byte 0 ("None") before each row
  for (let y = 0; y < size; y++) rows.set(px.subarray(y * size, (y + 1) * size), y * (size + 1) + 1);
  const ihdr = new Uint8Array(13);
  ihdr.set(u32be(size), 0);
  ihdr.set(u32be(size), 4);
  ihdr.set([8, 0, 0, 0, 0], 8); // 8 bits, greyscale, deflate, adaptive filtering, no interlace
  const texts = Object.entries(text).map(([k, v]) => chunk("tEXt", new TextEncoder().encode(`${k}\0${v}`)));
  return concat([new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", ihdr), ...texts,
    chunk("IDAT", await deflate(rows)), chunk("IEND", new Uint8Array(0))]);
}

// [{name, data: Uint8Array}] -> a ZIP archive (Blob), every entry stored.
export function zip(files) {
  const enc = new TextEncoder();
  const local = [], central = [];
  let offset = 0;
  for (const f of files) {
    const name = enc.encode(f.name), crc = crc32(f.data), n = f.data.length;
    const head = new DataView(new ArrayBuffer(30));
    head.setUint32(0, 0x04034b50, true); head.setUint16(4, 20, true); head.setUint16(6, 0x0800, true); // UTF-8 names
    head.setUint16(12, 0x21, true); // 1980-01-01: no clock in the archive, so it is the same every time
    head.setUint32(14, crc, true); head.setUint32(18, n, true); head.setUint32(22, n, true); head.setUint16(26, name.length, true);
    const dir = new DataView(new ArrayBuffer(46));
    dir.setUint32(0, 0x02014b50, true); dir.setUint16(4, 20, true); dir.setUint16(6, 20, true); dir.setUint16(8, 0x0800, true);
    dir.setUint16(14, 0x21, true); dir.setUint32(16, crc, true); dir.setUint32(20, n, true); dir.setUint32(24, n, true);
    dir.setUint16(28, name.length, true); dir.setUint32(42, offset, true);
    local.push(new Uint8Array(head.buffer), name, f.data);
    central.push(new Uint8Array(dir.buffer), name);
    offset += 30 + name.length + n;
  }
  const size = central.reduce((a, p) => a + p.length, 0);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true); end.setUint16(8, files.length, true); end.setUint16(10, files.length, true);
  end.setUint32(12, size, true); end.setUint32(16, offset, true);
  return new Blob([...local, ...central, new Uint8Array(end.buffer)], { type: "application/zip" });
}
