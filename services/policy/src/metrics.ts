import { Counter, Gauge, Histogram } from 'prom-client';
import type { Registry } from 'prom-client';

export interface PolicyMetrics {
  readonly inputEvents: Counter<'kind' | 'op'>;
  readonly published: Counter<'kind'>;
  readonly refused: Counter<'kind'>;
  readonly allocations: Counter<'outcome'>;
  readonly identitiesFreed: Counter;
  readonly identities: Gauge;
  readonly pods: Gauge;
  readonly policies: Gauge;
  readonly policiesWithProblems: Gauge;
  readonly compileSeconds: Histogram;
  readonly resyncs: Counter<'outcome'>;
}

export function createPolicyMetrics(registry: Registry): PolicyMetrics {
  const registers = [registry];
  return {
    inputEvents: new Counter({
      name: 'dyad_policy_input_events_total',
      help: 'Kubernetes objects applied, by kind (namespace, pod, networkpolicy) and op',
      labelNames: ['kind', 'op'],
      registers,
    }),
    published: new Counter({
      name: 'dyad_policy_published_total',
      help: 'Messages published, by kind (identity, pod, status, node-policy)',
      labelNames: ['kind'],
      registers,
    }),
    refused: new Counter({
      name: 'dyad_policy_refused_total',
      help: 'Messages not sent because they break their contract or exceed the size limit, by kind',
      labelNames: ['kind'],
      registers,
    }),
    allocations: new Counter({
      name: 'dyad_policy_identity_allocations_total',
      help: 'Identity allocations, by outcome (ok, failed)',
      labelNames: ['outcome'],
      registers,
    }),
    identitiesFreed: new Counter({
      name: 'dyad_policy_identities_freed_total',
      help: 'Identities freed by this replica after their grace period unused',
      registers,
    }),
    identities: new Gauge({
      name: 'dyad_policy_identities',
      help: 'Allocated identities',
      registers,
    }),
    pods: new Gauge({ name: 'dyad_policy_pods', help: 'Pods with an identity', registers }),
    policies: new Gauge({
      name: 'dyad_policy_network_policies',
      help: 'NetworkPolicies known',
      registers,
    }),
    policiesWithProblems: new Gauge({
      name: 'dyad_policy_network_policies_with_problems',
      help: 'NetworkPolicies not enforced exactly as written (see their status)',
      registers,
    }),
    compileSeconds: new Histogram({
      name: 'dyad_policy_compile_seconds',
      help: 'Time to compile what a flush of input changes touched',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    }),
    resyncs: new Counter({
      name: 'dyad_policy_resyncs_total',
      help: 'Full checks, by outcome: in-sync, repaired (stored outputs differed), recompiled (the incremental state differed from a from-scratch compile: a bug)',
      labelNames: ['outcome'],
      registers,
    }),
  };
}
