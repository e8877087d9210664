// A small evaluator for shape `where` clauses: enough SQL for tests, typed
// like Postgres where it matters (numeric columns compare numerically, text
// lexically, unknown literals take the other side's type, three-valued logic).
//
// Supported: = <> != < <= > >=, AND/OR/NOT, IS [NOT] NULL|TRUE|FALSE,
// [NOT] IN (...), [NOT] LIKE/ILIKE, [NOT] BETWEEN, + - * / %, ||, ::casts,
// lower/upper/length, literals (numbers, 'strings', TRUE/FALSE/NULL), $n,
// and `col [NOT] IN (SELECT ...)` / `(a, b) IN (SELECT x, y ...)` when the
// caller supplies subquery views (see subquery.js).
//
// Error texts follow Electric: "At location N: ..." where N is 0-based in the
// where text for semantic errors; syntax errors carry Postgres' 1-based cursor
// position inside "SELECT 1 WHERE <where>", as Electric passes it through.

import { NUMERIC_TYPES } from './table.js';

export class WhereError extends Error {
  constructor(message, field = 'where') {
    super(message);
    this.field = field;
  }
}

const SYNTAX_PREFIX = 'SELECT 1 WHERE '.length;
const KEYWORDS = new Set(['and', 'or', 'not', 'is', 'null', 'true', 'false', 'in', 'like', 'ilike', 'between', 'select', 'from', 'where']);
const TYPE_ALIASES = {
  int: 'int4', integer: 'int4', smallint: 'int2', bigint: 'int8', real: 'float4', float: 'float8',
  double: 'float8', decimal: 'numeric', boolean: 'bool', varchar: 'varchar', text: 'text',
  timestamp: 'timestamp', timestamptz: 'timestamptz', date: 'date', uuid: 'uuid',
};

function tokenize(src) {
  const toks = [];
  let i = 0;
  const syntax = (pos) => {
    throw new WhereError(`At location ${pos + SYNTAX_PREFIX + 1}: syntax error at or near "${src[pos]}"`);
  };
  while (i < src.length) {
    const c = src[i];
    if (/\s/.test(c)) { i++; continue; }
    const start = i;
    if (/[A-Za-z_\u0080-\uffff]/.test(c)) {
      while (i < src.length && /[A-Za-z0-9_$\u0080-\uffff]/.test(src[i])) i++;
      const word = src.slice(start, i);
      const low = word.toLowerCase();
      toks.push(KEYWORDS.has(low) ? { t: 'kw', v: low, pos: start } : { t: 'ident', v: low, pos: start });
    } else if (c === '"') {
      i++;
      let v = '';
      for (;;) {
        if (i >= src.length) syntax(start);
        if (src[i] === '"') {
          if (src[i + 1] === '"') { v += '"'; i += 2; continue; }
          i++;
          break;
        }
        v += src[i++];
      }
      toks.push({ t: 'ident', v, pos: start, quoted: true });
    } else if (c === "'") {
      i++;
      let v = '';
      for (;;) {
        if (i >= src.length) throw new WhereError(`At location ${start + SYNTAX_PREFIX + 1}: unterminated quoted string at or near "${src.slice(start)}"`);
        if (src[i] === "'") {
          if (src[i + 1] === "'") { v += "'"; i += 2; continue; }
          i++;
          break;
        }
        v += src[i++];
      }
      toks.push({ t: 'str', v, pos: start });
    } else if (/[0-9]/.test(c) || (c === '.' && /[0-9]/.test(src[i + 1] ?? ''))) {
      const m = /^(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?/.exec(src.slice(i));
      if (!m) syntax(i);
      i += m[0].length;
      toks.push({ t: 'num', v: m[0], pos: start });
    } else if (c === '$') {
      const m = /^\$(\d+)/.exec(src.slice(i));
      if (!m) syntax(i);
      i += m[0].length;
      toks.push({ t: 'param', v: m[1], pos: start });
    } else {
      const two = src.slice(i, i + 2);
      if (['<>', '!=', '<=', '>=', '||', '::'].includes(two)) {
        toks.push({ t: 'op', v: two, pos: start });
        i += 2;
      } else if ('=<>+-*/%(),.'.includes(c)) {
        toks.push({ t: 'op', v: c, pos: start });
        i++;
      } else syntax(i);
    }
  }
  toks.push({ t: 'eof', pos: src.length });
  return toks;
}

// ---------- parsing into an AST ----------

function parse(src) {
  const toks = tokenize(src);
  let p = 0;
  const peek = () => toks[p];
  const next = () => toks[p++];
  const isKw = (v) => peek().t === 'kw' && peek().v === v;
  const isOp = (v) => peek().t === 'op' && peek().v === v;
  const fail = (tok) => {
    if (tok.t === 'eof') throw new WhereError(`At location ${tok.pos + SYNTAX_PREFIX + 1}: syntax error at end of input`);
    const text = tok.t === 'str' ? `'${tok.v}'` : tok.t === 'param' ? `$${tok.v}` : src.slice(tok.pos).split(/\s/)[0];
    throw new WhereError(`At location ${tok.pos + SYNTAX_PREFIX + 1}: syntax error at or near "${text}"`);
  };
  const expectOp = (v) => (isOp(v) ? next() : fail(peek()));

  const orExpr = () => {
    let l = andExpr();
    while (isKw('or')) { const t = next(); l = { k: 'or', a: l, b: andExpr(), pos: t.pos }; }
    return l;
  };
  const andExpr = () => {
    let l = notExpr();
    while (isKw('and')) { const t = next(); l = { k: 'and', a: l, b: notExpr(), pos: t.pos }; }
    return l;
  };
  const notExpr = () => {
    if (isKw('not')) { const t = next(); return { k: 'not', a: notExpr(), pos: t.pos }; }
    return predicate();
  };
  const predicate = () => {
    const l = additive();
    const t = peek();
    if (t.t === 'op' && ['=', '<>', '!=', '<', '<=', '>', '>='].includes(t.v)) {
      next();
      return { k: 'cmp', op: t.v === '!=' ? '<>' : t.v, a: l, b: additive(), pos: t.pos };
    }
    if (isKw('is')) {
      next();
      const neg = isKw('not') ? (next(), true) : false;
      const w = next();
      if (w.t !== 'kw' || !['null', 'true', 'false'].includes(w.v)) fail(w);
      return { k: 'is', what: w.v, neg, a: l, pos: t.pos };
    }
    let neg = false;
    if (isKw('not')) { next(); neg = true; }
    if (isKw('in')) {
      next();
      expectOp('(');
      if (isKw('select')) {
        // `x IN (SELECT ...)`; NOT IN is a NOT over the sublink, as Postgres parses it.
        const sub = { k: 'sublink', test: l, select: subselect(), pos: t.pos };
        expectOp(')');
        return neg ? { k: 'not', a: sub, pos: t.pos } : sub;
      }
      const items = [additive()];
      while (isOp(',')) { next(); items.push(additive()); }
      expectOp(')');
      return { k: 'in', neg, a: l, items, pos: t.pos };
    }
    if (isKw('like') || isKw('ilike')) {
      const ci = next().v === 'ilike';
      return { k: 'like', neg, ci, a: l, b: additive(), pos: t.pos };
    }
    if (isKw('between')) {
      next();
      const lo = additive();
      if (!isKw('and')) fail(peek());
      next();
      return { k: 'between', neg, a: l, lo, hi: additive(), pos: t.pos };
    }
    if (neg) fail(peek());
    return l;
  };
  // SELECT col[, col] FROM [schema.]table [WHERE expr] inside IN (...).
  const subselect = () => {
    next();
    const columns = [ident()];
    while (isOp(',')) { next(); columns.push(ident()); }
    if (!isKw('from')) fail(peek());
    next();
    let schema = 'public';
    let name = ident();
    if (isOp('.')) { next(); schema = name; name = ident(); }
    let where = null;
    if (isKw('where')) { next(); where = orExpr(); }
    if (!isOp(')')) fail(peek());
    return { columns, schema, name, where };
  };
  const ident = () => {
    const tok = next();
    if (tok.t !== 'ident') fail(tok);
    return tok.v;
  };
  const additive = () => {
    let l = multiplicative();
    while (isOp('+') || isOp('-') || isOp('||')) {
      const t = next();
      l = { k: t.v === '||' ? 'concat' : 'arith', op: t.v, a: l, b: multiplicative(), pos: t.pos };
    }
    return l;
  };
  const multiplicative = () => {
    let l = unary();
    while (isOp('*') || isOp('/') || isOp('%')) {
      const t = next();
      l = { k: 'arith', op: t.v, a: l, b: unary(), pos: t.pos };
    }
    return l;
  };
  const unary = () => {
    if (isOp('-') || isOp('+')) {
      const t = next();
      const a = unary();
      if (a.k === 'num') return t.v === '-' ? { ...a, v: a.v.startsWith('-') ? a.v.slice(1) : `-${a.v}` } : a;
      return t.v === '-' ? { k: 'arith', op: '-', a: { k: 'num', v: '0', pos: t.pos }, b: a, pos: t.pos } : a;
    }
    return postfix();
  };
  const postfix = () => {
    let e = primary();
    while (isOp('::')) {
      const t = next();
      const n = next();
      if (n.t !== 'ident') fail(n);
      let type = n.v;
      if (type === 'double' && peek().t === 'ident' && peek().v === 'precision') next();
      if (type === 'character' && peek().t === 'ident' && peek().v === 'varying') { next(); type = 'varchar'; }
      e = { k: 'cast', type: TYPE_ALIASES[type] ?? type, a: e, pos: t.pos };
    }
    return e;
  };
  const primary = () => {
    const t = next();
    if (t.t === 'num') return { k: 'num', v: t.v, pos: t.pos };
    if (t.t === 'str') return { k: 'str', v: t.v, pos: t.pos };
    if (t.t === 'param') return { k: 'param', n: t.v, pos: t.pos };
    if (t.t === 'kw' && t.v === 'null') return { k: 'null', pos: t.pos };
    if (t.t === 'kw' && (t.v === 'true' || t.v === 'false')) return { k: 'bool', v: t.v === 'true', pos: t.pos };
    if (t.t === 'ident') {
      if (!t.quoted && isOp('(')) {
        next();
        const args = [];
        if (!isOp(')')) {
          args.push(orExpr());
          while (isOp(',')) { next(); args.push(orExpr()); }
        }
        expectOp(')');
        return { k: 'call', name: t.v, args, pos: t.pos };
      }
      return { k: 'col', name: t.v, pos: t.pos };
    }
    if (t.t === 'op' && t.v === '(') {
      const e = orExpr();
      if (isOp(',')) {
        // A row constructor, only meaningful on the left of IN (SELECT a, b ...).
        const items = [e];
        while (isOp(',')) { next(); items.push(orExpr()); }
        expectOp(')');
        return { k: 'row', items, pos: t.pos };
      }
      expectOp(')');
      return e;
    }
    return fail(t);
  };

  const ast = orExpr();
  if (peek().t !== 'eof') fail(peek());
  return ast;
}

// ---------- typing and compilation to closures ----------
// Static types: 'numeric', 'bool', 'text', 'unknown' (untyped literal or param),
// or another Postgres type name (compared as text). Runtime values are null,
// booleans, or strings in Postgres text form.

const typeClass = (t) => (NUMERIC_TYPES.has(t) ? 'numeric' : t === 'bool' ? 'bool' : t);

function columnType(col) {
  if (col.dims > 0) return 'array';
  if (col.base_type) return typeClass(col.base_type) === 'numeric' || col.base_type === 'bool' ? typeClass(col.base_type) : col.type;
  return typeClass(col.type);
}

const TRUE_WORDS = new Set(['t', 'true', 'y', 'yes', 'on', '1']);
const FALSE_WORDS = new Set(['f', 'false', 'n', 'no', 'off', '0']);

function toBool(s, pos) {
  const w = String(s).trim().toLowerCase();
  if (TRUE_WORDS.has(w)) return true;
  if (FALSE_WORDS.has(w)) return false;
  throw new WhereError(`At location ${pos}: invalid input syntax for type boolean: "${s}"`);
}

const NUM_RE = /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/;
const SPECIAL = { nan: NaN, infinity: Infinity, '+infinity': Infinity, '-infinity': -Infinity, inf: Infinity, '-inf': -Infinity };

function checkNumeric(s, pos) {
  if (NUM_RE.test(s) || s.trim().toLowerCase() in SPECIAL) return s.trim();
  throw new WhereError(`At location ${pos}: invalid input syntax for type numeric: "${s}"`);
}

// Exact comparison of decimal strings; falls back to doubles for exponents and
// the special float values. Postgres orders NaN above everything.
function compareNumeric(a, b) {
  const sa = a.toLowerCase();
  const sb = b.toLowerCase();
  const fa = sa in SPECIAL || /e/.test(sa);
  const fb = sb in SPECIAL || /e/.test(sb);
  if (fa || fb) {
    const x = sa in SPECIAL ? SPECIAL[sa] : Number(sa);
    const y = sb in SPECIAL ? SPECIAL[sb] : Number(sb);
    if (Number.isNaN(x) || Number.isNaN(y)) return Number.isNaN(x) === Number.isNaN(y) ? 0 : Number.isNaN(x) ? 1 : -1;
    return x === y ? 0 : x < y ? -1 : 1;
  }
  const parseDec = (s) => {
    let neg = false;
    if (s[0] === '-' || s[0] === '+') { neg = s[0] === '-'; s = s.slice(1); }
    let [ip, fp = ''] = s.split('.');
    ip = ip.replace(/^0+/, '');
    fp = fp.replace(/0+$/, '');
    if (ip === '' && fp === '') neg = false;
    return { neg, ip, fp };
  };
  const x = parseDec(sa);
  const y = parseDec(sb);
  if (x.neg !== y.neg) return x.neg ? -1 : 1;
  const sign = x.neg ? -1 : 1;
  if (x.ip.length !== y.ip.length) return (x.ip.length < y.ip.length ? -1 : 1) * sign;
  if (x.ip !== y.ip) return (x.ip < y.ip ? -1 : 1) * sign;
  const len = Math.max(x.fp.length, y.fp.length);
  const xf = x.fp.padEnd(len, '0');
  const yf = y.fp.padEnd(len, '0');
  if (xf === yf) return 0;
  return (xf < yf ? -1 : 1) * sign;
}

function numToText(n) {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return 'Infinity';
  if (n === -Infinity) return '-Infinity';
  return String(n);
}

function likeToRegExp(pattern, ci) {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\' && i + 1 < pattern.length) re += pattern[++i].replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    else if (c === '%') re += '[\\s\\S]*';
    else if (c === '_') re += '[\\s\\S]';
    else re += c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, ci ? 'i' : '');
}

// Compiled node: { type, f(row) -> value, lit?: literal string for unknowns }
function compile(node, ctx) {
  switch (node.k) {
    case 'num': return { type: 'numeric', f: () => node.v, lit: node.v };
    case 'str': return { type: 'unknown', f: () => node.v, lit: node.v, pos: node.pos };
    case 'null': return { type: 'unknown', f: () => null, isNull: true };
    case 'bool': return { type: 'bool', f: () => node.v };
    case 'param': {
      if (!(node.n in ctx.params)) throw new WhereError(`At location ${node.pos}: parameter $${node.n} was not provided`);
      const v = ctx.params[node.n];
      return { type: 'unknown', f: () => v, lit: v, pos: node.pos };
    }
    case 'col': {
      const col = ctx.columns.get(node.name);
      if (!col) throw new WhereError(`At location ${node.pos}: unknown reference ${node.name}`);
      ctx.refs.add(col.name);
      const name = col.name;
      const type = columnType(col);
      if (type === 'bool') return { type, f: (row) => (row[name] === null ? null : toBool(row[name], node.pos)) };
      return { type, f: (row) => row[name] };
    }
    case 'cast': return castTo(compile(node.a, ctx), node.type, node.pos);
    case 'sublink': return compileSublink(node, ctx);
    case 'row': throw new WhereError(`At location ${node.pos}: row expressions are only supported on the left of IN (SELECT ...)`);
    case 'call': return compileCall(node, ctx);
    case 'not': {
      const a = asBool(compile(node.a, ctx), node.pos);
      return { type: 'bool', f: (r) => { const v = a.f(r); return v === null ? null : !v; } };
    }
    case 'and':
    case 'or': {
      const a = asBool(compile(node.a, ctx), node.pos);
      const b = asBool(compile(node.b, ctx), node.pos);
      if (node.k === 'and') {
        return { type: 'bool', f: (r) => { const x = a.f(r); if (x === false) return false; const y = b.f(r); if (y === false) return false; return x === null || y === null ? null : true; } };
      }
      return { type: 'bool', f: (r) => { const x = a.f(r); if (x === true) return true; const y = b.f(r); if (y === true) return true; return x === null || y === null ? null : false; } };
    }
    case 'cmp': return compileCompare(node.op, compile(node.a, ctx), compile(node.b, ctx), node.pos);
    case 'is': {
      const a = compile(node.a, ctx);
      let test;
      if (node.what === 'null') test = (v) => v === null;
      else {
        const b = asBool(a, node.pos);
        const want = node.what === 'true';
        return { type: 'bool', f: (r) => { const v = b.f(r) === want; return node.neg ? !v : v; } };
      }
      return { type: 'bool', f: (r) => (node.neg ? !test(a.f(r)) : test(a.f(r))) };
    }
    case 'in': {
      const a = compile(node.a, ctx);
      const cmps = node.items.map((it) => compileCompare('=', a, compile(it, ctx), node.pos));
      return {
        type: 'bool',
        f: (r) => {
          let sawNull = false;
          for (const c of cmps) {
            const v = c.f(r);
            if (v === true) return !node.neg;
            if (v === null) sawNull = true;
          }
          return sawNull ? null : node.neg;
        },
      };
    }
    case 'like': {
      const a = asText(compile(node.a, ctx), node.pos);
      const b = asText(compile(node.b, ctx), node.pos);
      const cache = new Map();
      return {
        type: 'bool',
        f: (r) => {
          const s = a.f(r);
          const p = b.f(r);
          if (s === null || p === null) return null;
          let re = cache.get(p);
          if (!re) { re = likeToRegExp(p, node.ci); cache.set(p, re); }
          return re.test(s) !== node.neg;
        },
      };
    }
    case 'between': {
      const a = compile(node.a, ctx);
      const lo = compileCompare('>=', a, compile(node.lo, ctx), node.pos);
      const hi = compileCompare('<=', a, compile(node.hi, ctx), node.pos);
      return {
        type: 'bool',
        f: (r) => {
          const x = lo.f(r);
          const y = hi.f(r);
          let v;
          if (x === false || y === false) v = false;
          else if (x === null || y === null) v = null;
          else v = true;
          return v === null ? null : v !== node.neg;
        },
      };
    }
    case 'arith': {
      const a = asNumeric(compile(node.a, ctx), node.pos);
      const b = asNumeric(compile(node.b, ctx), node.pos);
      const ops = { '+': (x, y) => x + y, '-': (x, y) => x - y, '*': (x, y) => x * y, '/': (x, y) => x / y, '%': (x, y) => x % y };
      const op = ops[node.op];
      return { type: 'numeric', f: (r) => { const x = a.f(r); const y = b.f(r); return x === null || y === null ? null : numToText(op(Number(x), Number(y))); } };
    }
    case 'concat': {
      const a = asText(compile(node.a, ctx), node.pos);
      const b = asText(compile(node.b, ctx), node.pos);
      return { type: 'text', f: (r) => { const x = a.f(r); const y = b.f(r); return x === null || y === null ? null : x + y; } };
    }
    default:
      throw new WhereError(`At location ${node.pos ?? 0}: unsupported expression`);
  }
}

// Text of the value(s) a row holds in the given columns, as the key of a
// subquery view; null when any of them is NULL (never a member).
export function viewKey(row, names) {
  if (names.length === 1) return row[names[0]] ?? null;
  const vals = names.map((n) => row[n] ?? null);
  return vals.includes(null) ? null : JSON.stringify(vals);
}

const readableType = (c) => (c.dims > 0 ? `${c.type}[]` : c.type);

// `x IN (SELECT ...)` is decided against the dependency's current view (a Set
// of viewKey values), which the shape's subquery state supplies at run time.
function compileSublink(node, ctx) {
  if (!ctx.subqueries) throw new WhereError(`At location ${node.pos}: Subqueries are not allowed in subsets`);
  const tests = node.test.k === 'row' ? node.test.items : [node.test];
  if (!tests.every((e) => e.k === 'col')) {
    throw new WhereError(`At location ${node.pos}: only column references are supported on the left of IN (SELECT ...)`);
  }
  const cols = tests.map((e) => {
    const col = ctx.columns.get(e.name);
    if (!col) throw new WhereError(`At location ${e.pos}: unknown reference ${e.name}`);
    ctx.refs.add(col.name);
    return col;
  });
  const dep = ctx.subqueries.resolve(node.select, ctx);
  const left = cols.map(readableType).join(', ');
  const right = dep.columns.map(readableType).join(', ');
  if (left !== right) {
    const fmt = (s, n) => (n > 1 ? `(${s})` : s);
    throw new WhereError(`At location ${node.pos}: left side of \`IN (SELECT ...)\` has type ${fmt(left, cols.length)} but subquery returns ${fmt(right, dep.columns.length)}`);
  }
  const names = cols.map((c) => c.name);
  const slot = ctx.subqueries.views;
  node.dep = dep.index;
  node.tagColumns = names;
  return {
    type: 'bool',
    f: (r) => {
      const key = viewKey(r, names);
      if (key === null) return null;
      return slot.current[dep.index].has(key);
    },
  };
}

function compileCall(node, ctx) {
  const args = node.args.map((a) => compile(a, ctx));
  const one = (fn, type) => {
    if (args.length !== 1) throw new WhereError(`At location ${node.pos}: Could not select a function overload for ${node.name}`);
    const a = asText(args[0], node.pos);
    return { type, f: (r) => { const v = a.f(r); return v === null ? null : fn(v); } };
  };
  if (node.name === 'lower') return one((s) => s.toLowerCase(), 'text');
  if (node.name === 'upper') return one((s) => s.toUpperCase(), 'text');
  if (node.name === 'length' || node.name === 'char_length') return one((s) => String([...s].length), 'numeric');
  throw new WhereError(`At location ${node.pos}: unknown or unsupported function ${node.name}`);
}

function castTo(e, type, pos) {
  const cls = typeClass(type);
  if (e.type === 'unknown' && e.lit !== undefined) {
    if (cls === 'numeric') { const v = checkNumeric(e.lit, pos); return { type: cls, f: () => v, lit: v }; }
    if (cls === 'bool') { const v = toBool(e.lit, pos); return { type: cls, f: () => v }; }
    return { type: cls, f: e.f };
  }
  if (cls === 'bool' && e.type !== 'bool') return { type: cls, f: (r) => { const v = e.f(r); return v === null ? null : toBool(v, pos); } };
  if (cls === 'numeric' && e.type !== 'numeric') return { type: cls, f: (r) => { const v = e.f(r); return v === null ? null : checkNumeric(v, pos); } };
  if (e.type === 'bool' && cls !== 'bool') return { type: cls, f: (r) => { const v = e.f(r); return v === null ? null : String(v); } };
  return { type: cls, f: e.f };
}

function asBool(e, pos) {
  if (e.type === 'bool') return e;
  if (e.type === 'unknown') return castTo(e, 'bool', pos);
  throw new WhereError(`At location ${pos}: ${e.type} is not castable to bool`);
}

function asNumeric(e, pos) {
  if (e.type === 'numeric') return e;
  if (e.type === 'unknown') return castTo(e, 'numeric', pos);
  throw new WhereError(`At location ${pos}: operator does not exist for type ${e.type}`);
}

function asText(e, pos) {
  if (e.type === 'bool') throw new WhereError(`At location ${pos}: operator does not exist for type bool`);
  return e;
}

function compileCompare(op, a, b, pos) {
  // An untyped literal takes the type of the other side, as in Postgres.
  if (a.type === 'unknown' && b.type !== 'unknown') a = castTo(a, b.type, pos);
  else if (b.type === 'unknown' && a.type !== 'unknown') b = castTo(b, a.type, pos);
  const ta = a.type;
  const tb = b.type;
  let cmp;
  if (ta === 'numeric' || tb === 'numeric') {
    if (ta !== tb) throw new WhereError(`At location ${pos}: Could not select an operator overload for ${op}(${ta}, ${tb})`);
    cmp = compareNumeric;
  } else if (ta === 'bool' || tb === 'bool') {
    if (ta !== tb) throw new WhereError(`At location ${pos}: Could not select an operator overload for ${op}(${ta}, ${tb})`);
    cmp = (x, y) => (x === y ? 0 : x ? 1 : -1);
  } else {
    cmp = (x, y) => (x === y ? 0 : x < y ? -1 : 1);
  }
  const test = { '=': (c) => c === 0, '<>': (c) => c !== 0, '<': (c) => c < 0, '<=': (c) => c <= 0, '>': (c) => c > 0, '>=': (c) => c >= 0 }[op];
  return {
    type: 'bool',
    f: (r) => {
      const x = a.f(r);
      const y = b.f(r);
      if (x === null || y === null) return null;
      return test(cmp(x, y));
    },
  };
}

// Electric checks that params are numbered 1..n before typing the clause.
export function validateParams(params) {
  const keys = Object.keys(params);
  const nums = [];
  for (const k of keys) {
    if (!/^\d+$/.test(k)) throw new WhereError('Parameters can only use numbers as keys', 'params');
    nums.push(Number(k));
  }
  nums.sort((x, y) => x - y);
  if (!nums.every((n, i) => n === i + 1)) {
    throw new WhereError('Parameters must be numbered sequentially, starting from 1', 'params');
  }
}

export const parseWhere = parse;

// Compiles one boolean sub-expression (a DNF position) with a context from
// compileWhere; returns f(row) -> true | false | null (errors count as false).
export function compilePredicate(ast, ctx) {
  const e = asBool(compile(ast, ctx), ast.pos ?? 0);
  return (row) => {
    try {
      return e.f(row);
    } catch {
      return false;
    }
  };
}

// Compiles `where` against a table's columns. Returns {test(row) -> boolean,
// eval(row) -> true|false|null, refs, ast, ctx}. `subqueries` ({resolve(select,
// ctx) -> {index, columns}, views: {current}}) enables IN (SELECT ...).
export function compileWhere(text, columns, params = {}, opts = {}) {
  return compileAst(parse(text), columns, params, opts);
}

export function compileAst(ast, columns, params = {}, { subqueries = null } = {}) {
  validateParams(params);
  const ctx = { columns: new Map(columns.map((c) => [c.name, c])), params, refs: new Set(), subqueries };
  const e = compile(ast, ctx);
  if (e.type !== 'bool') {
    if (e.type === 'unknown') {
      const b = castTo(e, 'bool', 0);
      return { test: (r) => b.f(r) === true, eval: (r) => b.f(r), refs: ctx.refs, ast, ctx };
    }
    throw new WhereError('WHERE clause must return a boolean');
  }
  // A row whose values cannot be evaluated is not in the shape (as in Electric).
  const evaluate = (row) => {
    try {
      return e.f(row);
    } catch {
      return false;
    }
  };
  return { test: (row) => evaluate(row) === true, eval: evaluate, refs: ctx.refs, ast, ctx };
}

// A value expression (an ORDER BY item): {type, f(row) -> value | null}.
export function compileValue(ast, columns, params = {}) {
  const ctx = { columns: new Map(columns.map((c) => [c.name, c])), params, refs: new Set(), subqueries: null };
  return compile(ast, ctx);
}

// Orders two non-null values of a compiled expression's type (text in C
// collation, numbers numerically, false before true).
export function compareTyped(type, x, y) {
  if (type === 'numeric') return compareNumeric(x, y);
  if (type === 'bool') return x === y ? 0 : x ? 1 : -1;
  return x === y ? 0 : x < y ? -1 : 1;
}
