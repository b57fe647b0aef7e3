import type { LabPlan } from './plan.ts';
import { prefixLength } from './plan.ts';
import { ip, run } from './sys.ts';

/**
 * The lab's networks, all inside namespaces this run created: the fabric (one bridge in its own
 * netns) and one netns per node attached to it by a veth. Nothing is added to the machine's own
 * netns, so no lab prefix is ever routed to a real interface.
 */
export function buildFabric(plan: LabPlan): void {
  ip('netns', 'add', plan.fabricNetns);
  ip('-n', plan.fabricNetns, 'link', 'set', 'lo', 'up');
  ip('-n', plan.fabricNetns, 'link', 'add', plan.bridge, 'type', 'bridge');
  // A pure L2 switch: no addresses of its own, no IPv6 autoconfiguration chatter.
  nsSysctl(plan.fabricNetns, `net.ipv6.conf.${plan.bridge}.disable_ipv6`, '1');
  ip('-n', plan.fabricNetns, 'link', 'set', plan.bridge, 'up');
  for (const node of plan.nodes) {
    ip('netns', 'add', node.netns);
    ip('-n', node.netns, 'link', 'set', 'lo', 'up');
    nsSysctl(node.netns, 'net.ipv4.ip_forward', '1');
    nsSysctl(node.netns, 'net.ipv6.conf.all.forwarding', '1');
    ip(
      '-n',
      plan.fabricNetns,
      'link',
      'add',
      node.fabricPort,
      'type',
      'veth',
      'peer',
      'name',
      node.uplink,
      'netns',
      node.netns,
    );
    ip('-n', plan.fabricNetns, 'link', 'set', node.fabricPort, 'master', plan.bridge, 'up');
    for (const f of plan.families) {
      const addr = node.addresses[f];
      const net = plan.fabric[f];
      if (addr === undefined || net === undefined) continue;
      const args = [
        '-n',
        node.netns,
        'addr',
        'add',
        `${addr}/${prefixLength(net)}`,
        'dev',
        node.uplink,
      ];
      ip(...(f === 'IPv6' ? [...args, 'nodad'] : args));
    }
    ip('-n', node.netns, 'link', 'set', node.uplink, 'up');
  }
}

function nsSysctl(netns: string, key: string, value: string): void {
  run('nsenter', [`--net=/run/netns/${netns}`, 'sysctl', '-q', '-w', `${key}=${value}`]);
}
