import type { KernelFixture, Node, Pod } from './kernel-fixture.ts';
import { DATAPATH_OBJECT } from './build.ts';

export interface PodSpec {
  readonly pod: Pod;
  readonly endpointId: number;
  readonly identity: number;
  readonly flags?: number;
}

/** Agent spec entries that make pods known to their node: endpoint rows for both families and
 *  from-container / to-container on the host-side veth. */
export function podAgentSpec(pods: readonly PodSpec[]) {
  return {
    endpoints: pods.flatMap((p) =>
      [p.pod.v4, p.pod.v6].map((address) => ({
        address,
        ifindex: p.pod.hostIfindex,
        endpointId: p.endpointId,
        identity: p.identity,
        flags: p.flags ?? 0,
        mac: p.pod.mac,
        nodeMac: p.pod.hostMac,
      })),
    ),
    attach: pods.flatMap((p) => [
      {
        ifindex: p.pod.hostIfindex,
        program: 'fromContainer' as const,
        direction: 'ingress' as const,
      },
      { ifindex: p.pod.hostIfindex, program: 'toContainer' as const, direction: 'egress' as const },
    ]),
  };
}

export function baseSpec(node: Node) {
  return { pinDir: node.pinDir, objectPath: DATAPATH_OBJECT };
}

export async function setupNode(
  lab: KernelFixture,
  node: Node,
  pods: readonly PodSpec[],
  extra: Record<string, unknown> = {},
): Promise<unknown> {
  return lab.runAgent(node, { ...baseSpec(node), ...podAgentSpec(pods), ...extra });
}
