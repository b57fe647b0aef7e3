import { join } from 'node:path';
import { repoRoot } from '@dyad/testbed';

/** Where one lab keeps its files: `<repo>/.lab` (git-ignored). */
export interface LabPaths {
  readonly root: string;
  readonly dir: string;
  readonly state: string;
  readonly kubeconfig: string;
  readonly logs: string;
  /** Unix sockets: NATS forwarder, per-node agent sockets, per-pod control sockets. */
  readonly run: string;
  /** One JSON record per running pod, written by the node's pod runtime. */
  readonly pods: string;
  /** Per node: conflist, cached CNI results. */
  readonly cni: string;
  /** Temp dirs of the control plane (TMPDIR of the supervisor). */
  readonly tmp: string;
  /** Per node agent state dirs. */
  readonly agents: string;
}

/**
 * The lab's files. `dir` defaults to `<repo>/.lab`; processes the lab starts carry it in
 * `DYAD_LAB_DIR`, and tests point it elsewhere.
 */
export function labPaths(
  root: string = repoRoot(),
  dir: string = process.env.DYAD_LAB_DIR ?? join(root, '.lab'),
): LabPaths {
  return {
    root,
    dir,
    state: join(dir, 'state.json'),
    kubeconfig: join(dir, 'kubeconfig'),
    logs: join(dir, 'logs'),
    run: join(dir, 'run'),
    pods: join(dir, 'pods'),
    cni: join(dir, 'cni'),
    tmp: join(dir, 'tmp'),
    agents: join(dir, 'agents'),
  };
}

/** Marks which lab directory a run prefix belongs to, so a lost state file still leads to it. */
export const OWNER_DIR = '/run/dyad-lab';

/** Environment every lab process carries: cleanup finds processes by it. */
export const ENV_RUN = 'DYAD_LAB_RUN';
export const ENV_DIR = 'DYAD_LAB_DIR';
