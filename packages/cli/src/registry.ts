import type { Command } from './command.ts';
import { ipamListCommand } from './commands/ipam-list.ts';
import { labAdminCommands } from './commands/lab-admin.ts';
import { labExecCommand } from './commands/lab-exec.ts';
import { labProbeCommand } from './commands/lab-probe.ts';

/**
 * Every `dyad` command. Each lives in src/commands/<words>.ts; add it to this list.
 * Longest word sequences are matched first, so `bpf endpoint list` wins over `bpf`.
 */
export const COMMANDS: readonly Command[] = [
  ...labAdminCommands,
  labExecCommand,
  labProbeCommand(),
  ipamListCommand,
];
