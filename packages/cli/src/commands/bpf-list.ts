import type { AgentApiBody, AgentApiName } from '@dyad/contracts';
import { Exit, defineCommand } from '../command.ts';
import type { Command } from '../command.ts';
import { AGENT_FLAGS, openAgent } from '../agent/target.ts';
import {
  formatStructured,
  formatTable,
  isStructured,
  outputFlag,
  outputFormat,
} from '../output.ts';

/** The `dyad bpf <map> list` commands: one map read through the agent's API. */
export interface MapListSpec<K extends AgentApiName> {
  /** Command words after `dyad`, e.g. ['bpf', 'ct', 'list']. */
  readonly words: readonly string[];
  readonly summary: string;
  /** The agent API path (by its name in the contract) that returns the map's entries. */
  readonly api: K;
  readonly header: readonly string[];
  /** Entries to table rows, sorted as a person wants to read them. */
  readonly rows: (entries: AgentApiBody<K>) => string[][];
}

/**
 * A map as an aligned table, or as the API's JSON or YAML. `-o wide` is the table: these
 * tables already show every field the map holds.
 */
export function mapListCommand<K extends AgentApiName>(spec: MapListSpec<K>): Command {
  return defineCommand({
    words: spec.words,
    summary: spec.summary,
    description: `Reads the kernel's map through the node agent (not the agent's mirror of it).`,
    flags: { output: outputFlag(), ...AGENT_FLAGS },
    run: async (ctx) => {
      const format = outputFormat(ctx.flags.output);
      const list = await (await openAgent(ctx)).get(spec.api);
      ctx.stdout.write(
        isStructured(format)
          ? formatStructured(format, list.raw)
          : formatTable(spec.header, spec.rows(list.body)),
      );
      return Exit.ok;
    },
  });
}
