import { SpanKind, trace } from '@opentelemetry/api';
import { inSpan } from '@dyad/telemetry';
import type { Endpoint } from '../endpoint.ts';
import { CniError } from '../errors.ts';
import { Envelope, parseRequest, versionForError } from './request.ts';
import type { AddRequest, CheckRequest, CniRequest, DelRequest, GcRequest } from './request.ts';
import { buildResult, errorResult, versionResult } from './result.ts';
import { CniCode } from './spec.ts';
import { cniParent } from './trace.ts';
import type { CniTraceOptions } from './trace.ts';

/** The agent operations behind the CNI commands. */
export interface CniBackend {
  add(req: AddRequest): Promise<Endpoint>;
  del(req: DelRequest): Promise<void>;
  check(req: CheckRequest): Promise<void>;
  gc(req: GcRequest): Promise<void>;
  /** Whether ADD can be served now, and if not why. */
  status(): { ready: boolean; details: string };
}

/** What dyad-cni prints and the code it exits with. */
export interface CniReply {
  readonly exitCode: number;
  readonly stdout: string;
  /** The parsed request, for logs and metrics; undefined when it did not parse. */
  readonly request?: CniRequest;
  readonly errorCode?: number;
}

function json(v: unknown): string {
  return `${JSON.stringify(v)}\n`;
}

/**
 * Reads one forwarded call, runs it in a `cni <COMMAND>` span (parented as trace.ts says), and
 * renders the spec's result or error. Never throws.
 */
export async function handleCni(
  raw: string,
  backend: CniBackend,
  tracing?: CniTraceOptions,
): Promise<CniReply> {
  let envelope: Envelope | undefined;
  let request: CniRequest | undefined;
  try {
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch (e) {
      throw new CniError(
        CniCode.ioFailure,
        'malformed request from dyad-cni',
        e instanceof Error ? e.message : String(e),
      );
    }
    const env = Envelope.safeParse(parsed);
    if (!env.success)
      throw new CniError(
        CniCode.ioFailure,
        'malformed request from dyad-cni',
        env.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '),
      );
    envelope = env.data;
    request = parseRequest(envelope);
    return { exitCode: 0, stdout: await traced(envelope.env, request, backend, tracing), request };
  } catch (e) {
    const err =
      e instanceof CniError
        ? e
        : new CniError(
            CniCode.internal,
            'internal error in the dyad agent',
            e instanceof Error ? `${e.name}: ${e.message}` : String(e),
            { cause: e },
          );
    const version = request && 'version' in request ? request.version : versionForError(envelope);
    return {
      exitCode: 1,
      stdout: json(errorResult(version, err.code, err.message, err.details)),
      errorCode: err.code,
      ...(request ? { request } : {}),
    };
  }
}

async function traced(
  env: Readonly<Record<string, string>>,
  req: CniRequest,
  backend: CniBackend,
  tracing: CniTraceOptions | undefined,
): Promise<string> {
  if (req.command === 'VERSION') return run(req, backend);
  const pod = 'pod' in req ? req.pod : undefined;
  const parent = await cniParent(env, pod, tracing);
  const attributes = {
    'cni.command': req.command,
    ...('containerId' in req ? { 'cni.container_id': req.containerId } : {}),
    ...('ifName' in req ? { 'cni.ifname': req.ifName } : {}),
    ...(pod
      ? { 'k8s.namespace': pod.namespace, 'k8s.name': pod.name, 'k8s.pod.uid': pod.uid ?? '' }
      : {}),
  };
  const tracer = trace.getTracer('@dyad/datapath-agent');
  return inSpan(tracer, `cni ${req.command}`, SpanKind.SERVER, attributes, parent, () =>
    run(req, backend),
  );
}

async function run(req: CniRequest, backend: CniBackend): Promise<string> {
  switch (req.command) {
    case 'VERSION':
      return json(versionResult(req.version));
    case 'ADD': {
      const ep = await backend.add(req);
      return json(buildResult(req.version, ep, req.prevResult));
    }
    case 'DEL':
      await backend.del(req);
      return '';
    case 'CHECK':
      await backend.check(req);
      return '';
    case 'GC':
      await backend.gc(req);
      return '';
    case 'STATUS': {
      const s = backend.status();
      if (!s.ready) throw new CniError(CniCode.notAvailable, 'dyad agent not ready', s.details);
      return '';
    }
  }
}
