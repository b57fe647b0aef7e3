import { ReservedIdentity } from '@dyad/contracts';
import type { PayloadOf, PodIdentityEvent } from '@dyad/contracts';

type PodIdentityMsg = PayloadOf<typeof PodIdentityEvent>;

/** Which pod an endpoint belongs to, as its agent reported it. */
export interface PodRef {
  readonly namespace: string;
  readonly name: string;
  readonly uid?: string | undefined;
}

/** Where an endpoint's identity comes from. */
export interface IdentitySource {
  /** The pod's identity; ReservedIdentity.unknown when there is none for it (yet). */
  of(pod: PodRef): number;
}

/**
 * Pod identities as the policy service publishes them (`dyad.policy.v1.pod.<ns>.<name>`, stream
 * DYAD_POLICY). The policy service is the identity authority (labels → identity, kept in its KV
 * bucket); the router only carries a pod's identity into every node's ipcache entries for the
 * pod's addresses.
 */
export class PodIdentities implements IdentitySource {
  readonly #byPod = new Map<string, { readonly identity: number; readonly uid: string }>();

  get size(): number {
    return this.#byPod.size;
  }

  /** Applies one message; true when what it says about the pod changed. */
  apply(m: PodIdentityMsg): boolean {
    const key = `${m.namespace}/${m.name}`;
    const had = this.#byPod.get(key);
    if (m.op === 'delete') return this.#byPod.delete(key);
    if (had?.identity === m.identity && had.uid === m.uid) return false;
    this.#byPod.set(key, { identity: m.identity, uid: m.uid });
    return true;
  }

  /**
   * The identity published for the pod. A pod re-created under the same name has a new uid: an
   * endpoint that reports the other uid gets `unknown` rather than the other pod's identity (it
   * is the old pod going away, or the new one before its identity came), so no policy admits it
   * by mistake.
   */
  of(pod: PodRef): number {
    const e = this.#byPod.get(`${pod.namespace}/${pod.name}`);
    if (e === undefined || (pod.uid !== undefined && pod.uid !== e.uid)) {
      return ReservedIdentity.unknown;
    }
    return e.identity;
  }
}
