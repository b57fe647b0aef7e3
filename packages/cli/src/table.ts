/** Aligned columns for human output; `-o json` output never goes through here. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

/** Reads `-o json` / `--output=json` / `-o table`; anything else is a usage error. */
export function outputFormat(args: readonly string[]): 'table' | 'json' | { error: string } {
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    let v: string | undefined;
    if (a === '-o' || a === '--output') v = args[i + 1];
    else if (a?.startsWith('--output=')) v = a.slice('--output='.length);
    else if (a?.startsWith('-o') && a.length > 2) v = a.slice(2);
    else continue;
    if (v === 'json' || v === 'table') return v;
    return { error: `unknown output format ${v ?? '(missing)'}; use -o json or -o table` };
  }
  return 'table';
}
