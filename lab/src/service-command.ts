// How the lab starts a Dyad service: as the chart and the image do (deploy/values.yaml
// `image.entry`, each workload's `nodeFlags`; deploy/images/runtime.ts), so the lab runs and
// measures the compiled JavaScript production runs, with the heap limits. `npm run build` makes it;
// `labUp` runs the build first.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';
import { IMAGE_NODE_OPTIONS } from '@dyad/deploy/runtime';

const Flags = z.object({ nodeFlags: z.array(z.string()).default([]) });
const ChartValues = z.object({
  image: z.object({ entry: z.string().includes('%s') }),
  agent: Flags,
  ipam: Flags,
  kubeBridge: Flags,
  router: Flags,
  policy: Flags,
});

/** The values key of each service directory. */
const VALUES_KEY = {
  'datapath-agent': 'agent',
  ipam: 'ipam',
  'kube-bridge': 'kubeBridge',
  router: 'router',
  policy: 'policy',
} as const;

export interface ServiceCommand {
  /** Node's own flags, then the entry script. */
  readonly args: string[];
  readonly env: NodeJS.ProcessEnv;
}

/** `service` is its directory under services/. */
export function chartServiceCommand(root: string, service: string): ServiceCommand {
  const values = ChartValues.parse(
    parse(readFileSync(join(root, 'deploy', 'values.yaml'), 'utf8')),
  );
  const flags =
    service in VALUES_KEY ? values[VALUES_KEY[service as keyof typeof VALUES_KEY]].nodeFlags : [];
  return {
    args: [...flags, join(root, values.image.entry.replace('%s', service))],
    env: { NODE_OPTIONS: IMAGE_NODE_OPTIONS },
  };
}
