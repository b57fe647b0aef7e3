// The footprint bench's floor: a process that only imports the agent's third-party runtime
// dependencies as issue #20 fixed the list (whatever the agent ends up using), then idles.
// Plain JavaScript, so no type stripping is in the figure.
/* global process, setInterval */
await import('@nats-io/transport-node');
await import('@nats-io/jetstream');
await import('koffi');
await import('zod');
await import('pino');
await import('prom-client');
await import('@opentelemetry/api');
process.stdout.write('ready\n');
setInterval(() => undefined, 1 << 30);
