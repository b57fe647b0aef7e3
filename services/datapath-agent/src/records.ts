/**
 * What makes a node's last-value records on NATS equal what the node holds (after a start, a
 * reconnect, a server that lost its data): the subjects whose wanted payload is missing or
 * differs, and the stored live records the node no longer has, to tombstone. Pure: the agent's
 * endpoint reports and its allocation records both use it.
 */
export function planRecords<V>(
  stored: ReadonlyMap<string, { readonly value: V }>,
  want: ReadonlyMap<string, unknown>,
  live: (v: V) => boolean,
): { readonly publish: string[]; readonly tombstone: Array<readonly [string, V]> } {
  const publish: string[] = [];
  for (const [subject, payload] of want) {
    const have = stored.get(subject);
    if (!have || JSON.stringify(have.value) !== JSON.stringify(payload)) publish.push(subject);
  }
  const tombstone: Array<readonly [string, V]> = [];
  for (const [subject, d] of stored)
    if (!want.has(subject) && live(d.value)) tombstone.push([subject, d.value]);
  return { publish, tombstone };
}
