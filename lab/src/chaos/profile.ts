/** How hard and how long `npm run chaos` pushes: `short` for CI, `long` by hand. */
export interface ChaosProfile {
  readonly name: 'short' | 'long';
  /** One pod created (and, above `steadyPods`, the oldest deleted) every this many ms. */
  readonly churnIntervalMs: number;
  readonly steadyPods: number;
  /** Each fault runs this many times. */
  readonly rounds: number;
  /** How long a node is cut off from NATS. */
  readonly partitionMs: number;
  /** Watched after a fault heals, with churn on, before the invariants are checked. */
  readonly settleMs: number;
  /** Longest wait for the invariants to hold after a fault; what still fails then is a violation. */
  readonly convergeMs: number;
  /** GC graces the lab's services get, small so an outage can outlast them all. */
  readonly graces: {
    readonly ipamNodeS: number;
    readonly ipamOrphanS: number;
    readonly ipamGcIntervalS: number;
    readonly policyIdentityS: number;
    readonly policyIdentityGcIntervalS: number;
  };
}

const GRACES = {
  ipamNodeS: 20,
  // ipam's floor for the orphan grace
  ipamOrphanS: 30,
  ipamGcIntervalS: 2,
  policyIdentityS: 10,
  policyIdentityGcIntervalS: 2,
} as const;

export const PROFILES: Readonly<Record<ChaosProfile['name'], ChaosProfile>> = {
  short: {
    name: 'short',
    churnIntervalMs: 1000,
    steadyPods: 6,
    rounds: 1,
    partitionMs: 30_000,
    settleMs: 2000,
    convergeMs: 60_000,
    graces: GRACES,
  },
  long: {
    name: 'long',
    churnIntervalMs: 400,
    steadyPods: 15,
    rounds: 3,
    partitionMs: 30_000,
    settleMs: 5000,
    convergeMs: 120_000,
    graces: GRACES,
  },
};

/** The services' environment for these graces (the lab passes its environment on). */
export function graceEnv(p: ChaosProfile): Record<string, string> {
  return {
    DYAD_IPAM_NODE_GRACE_S: String(p.graces.ipamNodeS),
    DYAD_IPAM_ORPHAN_GRACE_S: String(p.graces.ipamOrphanS),
    DYAD_IPAM_GC_INTERVAL_S: String(p.graces.ipamGcIntervalS),
    DYAD_POLICY_IDENTITY_GRACE_S: String(p.graces.policyIdentityS),
    DYAD_POLICY_IDENTITY_GC_INTERVAL_S: String(p.graces.policyIdentityGcIntervalS),
  };
}

/** Longer than every GC grace plus one GC pass: what "down longer than every grace" means. */
export function outlastGracesMs(p: ChaosProfile): number {
  const g = p.graces;
  return (
    (Math.max(g.ipamNodeS, g.ipamOrphanS, g.policyIdentityS) +
      Math.max(g.ipamGcIntervalS, g.policyIdentityGcIntervalS) +
      5) *
    1000
  );
}
