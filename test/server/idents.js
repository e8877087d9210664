// Postgres identifier parsing as Electric does it for `table` and `columns`:
// unquoted names are ASCII-downcased and must be plain identifiers, quoted
// names keep their case and use "" for an embedded quote.

export class IdentError extends Error {}

const UNQUOTED_RE = /^[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*$/;

export function parseIdentifier(raw) {
  if (raw.startsWith('"')) {
    if (raw.length < 2 || !raw.endsWith('"')) {
      throw new IdentError(`Invalid unquoted identifier contains special characters: ${raw}`);
    }
    const inner = raw.slice(1, -1);
    if (inner === '') throw new IdentError('Invalid zero-length delimited identifier');
    if (inner.replace(/""/g, '').includes('"')) {
      throw new IdentError(`Invalid identifier with unescaped quote: ${raw}`);
    }
    return inner.replace(/""/g, '"');
  }
  if (raw === '') throw new IdentError('Invalid zero-length delimited identifier');
  if (!UNQUOTED_RE.test(raw)) {
    throw new IdentError(`Invalid unquoted identifier contains special characters: ${raw}`);
  }
  return raw.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

// Splits on `sep` outside double quotes.
function splitOutsideQuotes(s, sep) {
  const parts = [];
  let cur = '';
  let quoted = false;
  for (const ch of s) {
    if (ch === '"') quoted = !quoted;
    if (ch === sep && !quoted) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  parts.push(cur);
  return parts;
}

// "name" or "schema.name" (either part quoted) -> {schema, name}
export function parseRelation(raw) {
  const parts = splitOutsideQuotes(raw, '.');
  if (parts.length > 2) throw new IdentError(`Invalid relation: ${raw}`);
  if (parts.length === 1) return { schema: 'public', name: parseIdentifier(parts[0]) };
  return { schema: parseIdentifier(parts[0]), name: parseIdentifier(parts[1]) };
}

export function parseColumnList(raw) {
  return splitOutsideQuotes(raw, ',').map(parseIdentifier);
}

// How Electric prints a relation in messages: "schema"."name"
export const quoteIdent = (s) => `"${s.replace(/"/g, '""')}"`;
export const inspectRelation = (schema, name) => `${quoteIdent(schema)}.${quoteIdent(name)}`;
