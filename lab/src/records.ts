import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';

/**
 * A running lab pod, as its node's pod runtime wired it: what the CLI needs to probe from it
 * (the stand-in's control socket) and to it (its addresses), without asking the apiserver.
 */
export const PodRecord = z.object({
  namespace: z.string(),
  name: z.string(),
  uid: z.string(),
  node: z.string(),
  netns: z.string(),
  containerId: z.string(),
  /** Primary family first, as in status.podIPs. */
  podIPs: z.array(z.string()),
  ports: z.array(
    z.object({ name: z.string().optional(), port: z.number().int(), protocol: z.string() }),
  ),
  control: z.string(),
  standinPid: z.number().int(),
  /** Pod creation (apiserver) and the moment the pod runtime reported it Running. */
  createdAt: z.string().optional(),
  runningAt: z.string(),
});
export type PodRecordValue = z.output<typeof PodRecord>;

function fileOf(dir: string, namespace: string, name: string): string {
  // Namespaces are DNS labels and names DNS subdomains: neither holds '_'.
  return join(dir, `${namespace}_${name}.json`);
}

export function writePodRecord(dir: string, r: PodRecordValue): void {
  mkdirSync(dir, { recursive: true });
  const path = fileOf(dir, r.namespace, r.name);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(r) + '\n');
  renameSync(tmp, path);
}

export function readPodRecord(
  dir: string,
  namespace: string,
  name: string,
): PodRecordValue | undefined {
  try {
    return PodRecord.parse(JSON.parse(readFileSync(fileOf(dir, namespace, name), 'utf8')));
  } catch {
    return undefined;
  }
}

export function removePodRecord(dir: string, namespace: string, name: string, uid: string): void {
  const r = readPodRecord(dir, namespace, name);
  // A newer pod of the same name may already have written its record.
  if (r === undefined || r.uid === uid) rmSync(fileOf(dir, namespace, name), { force: true });
}

export function listPodRecords(dir: string): PodRecordValue[] {
  let names: string[];
  try {
    names = readdirSync(dir).filter((f) => f.endsWith('.json'));
  } catch {
    return [];
  }
  const out: PodRecordValue[] = [];
  for (const f of names) {
    try {
      out.push(PodRecord.parse(JSON.parse(readFileSync(join(dir, f), 'utf8'))));
    } catch {
      // being rewritten or removed
    }
  }
  return out;
}

/** `ns/name` → [ns, name]; undefined when it does not look like one. */
export function parsePodRef(ref: string): [string, string] | undefined {
  const m = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/.exec(ref);
  return m === null ? undefined : [m[1] as string, m[3] as string];
}
