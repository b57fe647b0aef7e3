// The lab's commands for `dyad` (lab exec, lab probe, lab up/down/status) and where its nodes'
// agents answer. @dyad/cli imports this module only when the lab is installed next to it and a
// command needs it (see PLUGIN_PACKAGES in packages/cli/src/plugins.ts); the CLI itself never
// depends on the lab.
import type { AgentLocation, Plugin } from '@dyad/cli';
import { labDownCommand, labStatusCommand, labUpCommand } from './cli-admin.ts';
import { labExecCommand } from './cli-exec.ts';
import { labProbeCommand } from './cli-probe.ts';
import { labPaths } from './paths.ts';
import { readState } from './state.ts';

/**
 * `--node NAME` in the lab: that node's agent socket from the lab's state file. Undefined when
 * no lab state exists here, so `dyad` goes on to the standard socket.
 */
export function locateLabAgent(
  node: string,
  env: Readonly<Record<string, string | undefined>>,
): AgentLocation | undefined {
  const state = readState(labPaths(undefined, env['DYAD_LAB_DIR']).state);
  if (state === undefined) return undefined;
  const n = state.nodes.find((x) => x.name === node);
  if (n === undefined)
    return { error: `the lab ${state.prefix} has ${state.nodes.map((x) => x.name).join(', ')}` };
  return { socket: n.apiSocket };
}

export const plugin = {
  name: '@dyad/lab',
  commands: [labExecCommand, labProbeCommand, labUpCommand, labDownCommand, labStatusCommand],
  locateAgent: locateLabAgent,
} satisfies Plugin;
