// A cursor over the bytes of a WebAssembly section: LEB128 integers and
// names, for what WebAssembly.Module's API does not expose (symbol tables,
// dylink info, export and name indices).  Used by check-imports.mjs and
// test/bench/wasmprof.mjs.
export function reader(buf, pos = 0) {
  const r = {
    pos,
    u8: () => buf[r.pos++],
    uleb() {
      let v = 0, shift = 0, b
      do { b = buf[r.pos++]; v += (b & 0x7f) * 2 ** shift; shift += 7 } while (b & 0x80)
      return v
    },
    str() { const n = r.uleb(); const s = Buffer.from(buf.subarray(r.pos, r.pos + n)).toString(); r.pos += n; return s },
  }
  return r
}
