/** Base of the errors @dyad/telemetry raises; `new X(message, { cause })` as with Error. */
export class TelemetryError extends Error {
  override name = 'TelemetryError';
}

/** The health/metrics HTTP server could not bind its port. */
export class HealthServerListenError extends TelemetryError {
  override name = 'HealthServerListenError';
}
