/** One nats-server's place in a cluster: its routes name every member, itself included. */
export interface NatsClusterMember {
  /** Cluster name shared by the members. */
  readonly name: string;
  readonly port: number;
  /** nats-route://host:port of every member (a server ignores its route to itself). */
  readonly routes: readonly string[];
}

export interface NatsConfigOptions {
  readonly serverName: string;
  readonly host: string;
  readonly port: number;
  readonly monitorPort: number;
  readonly storeDir: string;
  /** Absent: a single server (unit tests). */
  readonly cluster?: NatsClusterMember;
  /**
   * JetStream's fsync interval (`sync_interval`); absent: the server's default (2 min). See
   * lab/README.md for the value the lab and the chart use and why.
   */
  readonly syncInterval?: string;
}

/**
 * A nats-server configuration file: identity, listeners, routes and the JetStream store. Only
 * these; authentication and TLS are composed in by whoever adds them, so this stays the one
 * place a server's cluster shape is written.
 */
export function natsConfig(o: NatsConfigOptions): string {
  const lines = [
    `server_name: ${JSON.stringify(o.serverName)}`,
    `listen: "${o.host}:${o.port}"`,
    `http: "${o.host}:${o.monitorPort}"`,
  ];
  if (o.cluster !== undefined) {
    lines.push(
      'cluster {',
      `  name: ${JSON.stringify(o.cluster.name)}`,
      `  listen: "${o.host}:${o.cluster.port}"`,
      `  routes: [${o.cluster.routes.map((r) => JSON.stringify(r)).join(', ')}]`,
      '}',
    );
  }
  lines.push(
    'jetstream {',
    `  store_dir: ${JSON.stringify(o.storeDir)}`,
    '  max_memory_store: 256MB',
    '  max_file_store: 1GB',
    ...(o.syncInterval === undefined ? [] : [`  sync_interval: ${o.syncInterval}`]),
    '}',
    '',
  );
  return lines.join('\n');
}
