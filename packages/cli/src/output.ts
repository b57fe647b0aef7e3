import type { FlagSpec } from './command.ts';
import { toYaml } from './yaml.ts';

/** `-o`: a table (the default), a table with more columns, or the data as JSON or YAML. */
export const OutputFormat = { table: 'table', wide: 'wide', json: 'json', yaml: 'yaml' } as const;
export type OutputFormat = (typeof OutputFormat)[keyof typeof OutputFormat];

const ALL_FORMATS: readonly OutputFormat[] = ['table', 'wide', 'json', 'yaml'];

/** The `-o/--output` flag of a command that prints these formats. */
export function outputFlag(
  formats: readonly OutputFormat[] = ALL_FORMATS,
): FlagSpec & { readonly type: 'string' } {
  const text: Record<OutputFormat, string> = {
    table: 'table (the default)',
    wide: 'wide (more columns)',
    json: 'json',
    yaml: 'yaml',
  };
  return {
    type: 'string',
    short: 'o',
    value: 'FORMAT',
    description: `output: ${formats.map((f) => text[f]).join(', ')}`,
    choices: formats,
  };
}

/** The format a parsed `-o` asks for (the parser already refused values not in its choices). */
export function outputFormat(v: string | undefined): OutputFormat {
  return v === 'wide' || v === 'json' || v === 'yaml' ? v : 'table';
}

/** True when the data goes out as it is rather than as a table. */
export function isStructured(f: OutputFormat): f is 'json' | 'yaml' {
  return f === 'json' || f === 'yaml';
}

/** The data as JSON (two-space indent) or YAML. */
export function formatStructured(f: 'json' | 'yaml', value: unknown): string {
  return f === 'json' ? `${JSON.stringify(value, null, 2)}\n` : toYaml(value);
}

/** Aligned columns for people; the last column is not padded. */
export function formatTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

/** A table cell: '-' for absent or empty. */
export function cell(v: string | number | boolean | undefined | null): string {
  return v === undefined || v === null || v === '' ? '-' : String(v);
}

/** Names of the set bits of a flags word, '-' when none. */
export function flagNames(v: number, names: Readonly<Record<number, string>>): string {
  const out = Object.entries(names)
    .filter(([bit]) => (v & Number(bit)) !== 0)
    .map(([, name]) => name);
  return out.length ? out.join(',') : '-';
}
