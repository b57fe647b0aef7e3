/**
 * What a test or bench run hands on to the service processes it starts, so that one command line
 * can A/B a setting: `DYAD_NATS_COALESCE` as is, and `DYAD_CHILD_NODE_OPTIONS` as the children's
 * `NODE_OPTIONS` (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile them). The harnesses
 * otherwise give their children a minimal environment.
 */
export function childPassThroughEnv(
  env: Readonly<Record<string, string | undefined>> = process.env,
): Record<string, string> {
  const out: Record<string, string> = {};
  const coalesce = env['DYAD_NATS_COALESCE'];
  if (coalesce !== undefined) out['DYAD_NATS_COALESCE'] = coalesce;
  const nodeOptions = env['DYAD_CHILD_NODE_OPTIONS'];
  if (nodeOptions !== undefined) out['NODE_OPTIONS'] = nodeOptions;
  return out;
}
