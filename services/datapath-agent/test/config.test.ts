import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/index.ts';

describe('agent config', () => {
  it('derives per-node defaults from the node name', () => {
    const c = loadConfig({ DYAD_NODE_NAME: 'node-a' });
    expect(c.pinDir).toBe('/sys/fs/bpf/dyad/node-a');
    expect(c.stateFile).toBe('/var/lib/dyad/agent/state.json');
    expect(c.nats.servers).toEqual(['nats://127.0.0.1:4222']);
    expect(c.enableForwarding).toBe(true);
  });

  it('reads per-agent paths, uplinks and flags', () => {
    const c = loadConfig({
      DYAD_NODE_NAME: 'n1',
      DYAD_CNI_SOCKET: '/tmp/x/cni.sock',
      DYAD_API_SOCKET: '/tmp/x/api.sock',
      DYAD_PIN_DIR: '/sys/fs/bpf/dyab12/n1',
      DYAD_STATE_DIR: '/tmp/x',
      DYAD_UPLINKS: 'eth1, eth2',
      DYAD_ENABLE_FORWARDING: '0',
      NATS_URL: 'nats://127.0.0.1:1,nats://127.0.0.1:2',
    });
    expect(c).toMatchObject({
      cniSocket: '/tmp/x/cni.sock',
      apiSocket: '/tmp/x/api.sock',
      pinDir: '/sys/fs/bpf/dyab12/n1',
      stateFile: '/tmp/x/state.json',
      uplinks: ['eth1', 'eth2'],
      enableForwarding: false,
    });
    expect(c.nats.servers).toHaveLength(2);
  });

  it('refuses a missing node name and a veth prefix that leaves no room for the hash', () => {
    expect(() => loadConfig({})).toThrow(ConfigError);
    expect(() => loadConfig({ DYAD_NODE_NAME: 'n', DYAD_VETH_PREFIX: 'toolongprefix' })).toThrow(
      /DYAD_VETH_PREFIX/,
    );
  });
});
