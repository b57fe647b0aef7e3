import type { Command } from './command.ts';
import { bpfCtListCommand } from './commands/bpf-ct-list.ts';
import { bpfEndpointListCommand } from './commands/bpf-endpoint-list.ts';
import { bpfIpcacheListCommand } from './commands/bpf-ipcache-list.ts';
import { endpointListCommand } from './commands/endpoint-list.ts';
import { ipamListCommand } from './commands/ipam-list.ts';
import { labAdminCommands } from './commands/lab-admin.ts';
import { labExecCommand } from './commands/lab-exec.ts';
import { labProbeCommand } from './commands/lab-probe.ts';
import { statusCommand } from './commands/status.ts';

/**
 * Every `dyad` command. Each lives in src/commands/<words>.ts; add it to this list.
 * Longest word sequences are matched first, so `bpf endpoint list` wins over `bpf`.
 */
export const COMMANDS: readonly Command[] = [
  ...labAdminCommands,
  labExecCommand,
  labProbeCommand(),
  ipamListCommand,
  statusCommand,
  endpointListCommand,
  bpfEndpointListCommand,
  bpfIpcacheListCommand,
  bpfCtListCommand,
];
