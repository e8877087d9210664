// Log offsets as Electric defines them: "<tx>_<op>", where tx is a u64 (the
// commit LSN, or 0 for the initial snapshot) and op is a decimal or "inf".
// tx is kept as a BigInt because real LSNs can exceed 2^53.

export const BEFORE_ALL = Object.freeze({ tx: -1n, op: 0 });
// Electric's LogOffset.last_before_real_offsets(): the end of the snapshot
// region, below every real (tx > 0) offset.
export const LAST_VIRTUAL = Object.freeze({ tx: 0n, op: Infinity });

export function offset(tx, op) {
  return { tx: BigInt(tx), op };
}

const OFFSET_RE = /^\+?(\d+)_(?:\+?(\d+)|(inf))$/;

// Returns an offset, the string "now", or null for an invalid format.
export function parseOffset(str) {
  if (str === '-1') return BEFORE_ALL;
  if (str === 'now') return 'now';
  const m = OFFSET_RE.exec(str);
  if (!m) return null;
  const tx = BigInt(m[1]);
  if (tx > 0xffffffffffffffffn) return null;
  const op = m[3] ? Infinity : Number(m[2]);
  if (!Number.isSafeInteger(op) && op !== Infinity) return null;
  return { tx, op };
}

export function formatOffset(o) {
  if (o.tx === -1n) return '-1';
  return `${o.tx}_${o.op === Infinity ? 'inf' : o.op}`;
}

export function compareOffsets(a, b) {
  if (a.tx !== b.tx) return a.tx < b.tx ? -1 : 1;
  if (a.op === b.op) return 0;
  return a.op < b.op ? -1 : 1;
}

export const isBeforeAll = (o) => o.tx === -1n;
// Snapshot offsets (tx 0) are "virtual": they name snapshot chunks, not log entries.
export const isVirtual = (o) => o.tx === 0n;
export const maxOffset = (a, b) => (compareOffsets(a, b) >= 0 ? a : b);
