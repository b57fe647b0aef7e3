/**
 * A small YAML emitter for JSON values (what `-o yaml` prints): block style, two-space indent,
 * sequences at their key's indent as kubectl prints them. Strings stay plain only when no YAML
 * 1.1 or 1.2 reader could take them for anything else (a number, a bool, a date, a key); all
 * others are written as JSON strings, which are valid YAML double-quoted scalars.
 */

const RESERVED = /^(?:y|n|yes|no|on|off|true|false|null|~)$/i;

/** Plain: starts with a letter, no `: ` / ` #`, no trailing colon or space, no flow indicators. */
const PLAIN = /^[A-Za-z][A-Za-z0-9_./:@+()-]*(?: [A-Za-z0-9_./:@+()-]+)*$/;

function scalar(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'boolean') return String(v);
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : 'null';
  if (typeof v === 'bigint') return v.toString();
  // Only strings reach here from JSON values; anything else is shown as JSON would show it.
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return PLAIN.test(s) && !RESERVED.test(s) && !s.endsWith(':') && !s.includes(': ')
    ? s
    : JSON.stringify(s);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Entries of an object that JSON would keep (undefined fields are left out, as JSON does). */
function entries(o: Record<string, unknown>): Array<[string, unknown]> {
  return Object.entries(o).filter(([, v]) => v !== undefined && typeof v !== 'function');
}

function isEmptyCollection(v: unknown): boolean {
  return (Array.isArray(v) && v.length === 0) || (isPlainObject(v) && entries(v).length === 0);
}

function emptyCollection(v: unknown): string {
  return Array.isArray(v) ? '[]' : '{}';
}

function lines(v: unknown, indent: string): string[] {
  if (Array.isArray(v)) {
    return v.flatMap((item) => {
      if (isEmptyCollection(item) || (!Array.isArray(item) && !isPlainObject(item)))
        return [`${indent}- ${isEmptyCollection(item) ? emptyCollection(item) : scalar(item)}`];
      // The first line of a nested block goes after the dash; the rest align with it.
      const inner = lines(item, `${indent}  `);
      const first = inner[0] ?? '';
      return [`${indent}- ${first.slice(indent.length + 2)}`, ...inner.slice(1)];
    });
  }
  if (isPlainObject(v)) {
    return entries(v).flatMap(([k, x]) => {
      const key = `${indent}${scalar(k)}:`;
      if (isEmptyCollection(x)) return [`${key} ${emptyCollection(x)}`];
      if (Array.isArray(x)) return [key, ...lines(x, indent)];
      if (isPlainObject(x)) return [key, ...lines(x, `${indent}  `)];
      return [`${key} ${scalar(x)}`];
    });
  }
  return [`${indent}${scalar(v)}`];
}

/** The YAML document of a JSON value, ending in a newline. */
export function toYaml(value: unknown): string {
  if (isEmptyCollection(value)) return `${emptyCollection(value)}\n`;
  return `${lines(value, '').join('\n')}\n`;
}
