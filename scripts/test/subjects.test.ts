// Subjects (and the KV keys that are subjects too) are built only by @dyad/contracts, from typed
// parameters, so a subject's shape has one definition. Elsewhere a subject or filter is the value
// of a contracts builder or constant, never text glued to one: a caller that appends '.>' to a
// root, slices a filter, or spells `dyad.<area>.` inside a template builds a second definition
// that the contract's change would not reach.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CONTRACTS = join(ROOT, 'packages', 'contracts');
// The bus's own tests carry the transport's test-only contracts (packages/bus/test/helpers.ts),
// which are no part of the wire and so have no builders in contracts.
const BUS_TESTS = join(ROOT, 'packages', 'bus', 'test');

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    if (e === 'node_modules' || e.startsWith('.')) continue;
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...tsFiles(p));
    else if (e.endsWith('.ts')) out.push(p);
  }
  return out;
}

// A name that holds a subject, a filter, a subject root or a KV key family.
const SUBJECTISH = String.raw`[\w.]*(?:subject|filter|_root|ipamkey|policykey)\w*`;

const RULES: readonly [RegExp, string][] = [
  // `${IpamSubject.node}.>`, `${root}.x.${y}`: a subject-ish value followed by a token separator
  [new RegExp(String.raw`\$\{\s*${SUBJECTISH}[^}]*\}(?:[.>*]|\$\{)`, 'i'), 'appends to a subject'],
  // `x.${ipamNodeSubject(n)}`
  [new RegExp(String.raw`\.\$\{\s*${SUBJECTISH}`, 'i'), 'prepends to a subject'],
  // `dyad.policy.v1.identity.${id}`: the wire spelling of a subject, with a hole in it
  [/`[^`]*\bdyad\.[a-z]+\.[^`]*\$\{[^`]*`/, 'spells a subject in a template'],
  [/`[^`]*\$\{[^`]*\bdyad\.[a-z]+\.[^`]*`/, 'spells a subject in a template'],
  // subject + '.x', '.x' + subject
  [
    new RegExp(String.raw`${SUBJECTISH}(?:\([^)]*\))?\s*\+\s*['"\`]`, 'i'),
    'concatenates a subject',
  ],
  [new RegExp(String.raw`['"\`]\s*\+\s*${SUBJECTISH}`, 'i'), 'concatenates a subject'],
  // routerNodeFilter(node).slice(0, -1): cutting a subject to make another
  [
    new RegExp(String.raw`${SUBJECTISH}\([^)]*\)\s*\.\s*(?:slice|substring|replace|split)\(`, 'i'),
    'cuts a subject',
  ],
];

/** The places in `text` that build a subject from strings, as `line: rule: code`. */
export function subjectBuilding(text: string): string[] {
  const found: string[] = [];
  text.split('\n').forEach((line, i) => {
    const code = line.replace(/\/\/.*$/, '').replace(/^\s*\*.*$/, '');
    for (const [re, what] of RULES) {
      if (re.test(code)) {
        found.push(`${i + 1}: ${what}: ${line.trim()}`);
        break;
      }
    }
  });
  return found;
}

function violations(): string[] {
  const out: string[] = [];
  const roots = ['packages', 'services'].flatMap((g) =>
    readdirSync(join(ROOT, g)).map((d) => join(ROOT, g, d)),
  );
  roots.push(join(ROOT, 'lab'), join(ROOT, 'bench'), join(ROOT, 'scripts'));
  for (const root of roots) {
    for (const file of tsFiles(root)) {
      if (file.startsWith(CONTRACTS + '/') || file.startsWith(BUS_TESTS + '/')) continue;
      if (file === fileURLToPath(import.meta.url)) continue;
      for (const v of subjectBuilding(readFileSync(file, 'utf8')))
        out.push(`${relative(ROOT, file)}:${v}`);
    }
  }
  return out;
}

describe('subjects are built only by @dyad/contracts', () => {
  it('no file outside packages/contracts builds a subject from strings', () => {
    expect(violations()).toEqual([]);
  });

  it('recognizes the ways a subject gets glued together (a check that saw nothing would pass)', () => {
    const bad = [
      'const f = `${IpamSubject.node}.>`;',
      'const f = `${routerNodeFilter(node).slice(0, -1)}ipcache.>`;',
      'const k = `${IpamKey.slotPrefix}${node}.>`;',
      'kv.keys(`${IpamKey.nodePrefix}>`);',
      'm.get(`dyad.policy.v1.identity.${id}`);',
      "const s = K8S_SUBJECT_ROOT + '.pod.>';",
      'const s = `x.${ipamNodeSubject(n)}`;',
    ];
    for (const line of bad) expect(subjectBuilding(line), line).toHaveLength(1);
    const fine = [
      'const f = ipamAllocFilter(node);',
      'log(`published ${subject}`);',
      'nc.subscribe(`${this.inbox}.*`);',
      "bus.publish(Note, 'dyad.test.v1.note.1', { n: 1 });",
      '// `${IpamSubject.node}.>` in a comment',
    ];
    for (const line of fine) expect(subjectBuilding(line), line).toEqual([]);
  });
});
