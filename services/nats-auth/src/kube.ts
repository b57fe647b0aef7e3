import { AuthenticationV1Api, CoreV1Api } from '@kubernetes/client-node';
import type { KubeConfig } from '@kubernetes/client-node';
import type { ReviewedToken } from './identity.ts';
import type { SecretStore } from './keys.ts';
import type { TokenReviewer } from './responder.ts';

function statusOf(err: unknown): number | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'number') {
    return err.code;
  }
  return undefined;
}

/** TokenReview with Dyad's audience: only tokens made for NATS pass, never API tokens. */
export function tokenReviewer(kc: KubeConfig, audience: string): TokenReviewer {
  const api = kc.makeApiClient(AuthenticationV1Api);
  return async (token): Promise<ReviewedToken> => {
    const r = await api.createTokenReview({
      body: {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        spec: { token, audiences: [audience] },
      },
    });
    const s = r.status;
    const audienceOk = s?.audiences?.includes(audience) ?? false;
    return {
      authenticated: s?.authenticated === true && audienceOk,
      username: s?.user?.username,
      extra: s?.user?.extra,
      error: s?.authenticated === true && !audienceOk ? 'audience not granted' : s?.error,
    };
  };
}

/** One Secret, read and replaced (the service's role names it and allows nothing else). */
export function secretStore(kc: KubeConfig, namespace: string, name: string): SecretStore {
  const api = kc.makeApiClient(CoreV1Api);
  return {
    async read() {
      try {
        const s = await api.readNamespacedSecret({ name, namespace });
        const data: Record<string, string> = {};
        for (const [k, v] of Object.entries(s.data ?? {})) {
          data[k] = Buffer.from(v, 'base64').toString('utf8');
        }
        return { data, resourceVersion: s.metadata?.resourceVersion ?? '' };
      } catch (err) {
        if (statusOf(err) === 404) return undefined;
        throw err;
      }
    },
    async write(data, resourceVersion) {
      const encoded: Record<string, string> = {};
      for (const [k, v] of Object.entries(data)) encoded[k] = Buffer.from(v).toString('base64');
      try {
        const cur = await api.readNamespacedSecret({ name, namespace });
        await api.replaceNamespacedSecret({
          name,
          namespace,
          body: { ...cur, metadata: { ...cur.metadata, resourceVersion }, data: encoded },
        });
        return true;
      } catch (err) {
        if (statusOf(err) === 409) return false;
        throw err;
      }
    },
  };
}
