import type { Command } from './command.ts';
import { bpfCtListCommand } from './commands/bpf-ct-list.ts';
import { bpfEndpointListCommand } from './commands/bpf-endpoint-list.ts';
import { bpfIpcacheListCommand } from './commands/bpf-ipcache-list.ts';
import { bpfLbListCommand } from './commands/bpf-lb-list.ts';
import { endpointListCommand } from './commands/endpoint-list.ts';
import { ipamListCommand } from './commands/ipam-list.ts';
import { monitorCommand } from './commands/monitor.ts';
import { observeCommand } from './commands/observe.ts';
import { identityListCommand, policyGetCommand } from './commands/policy-get.ts';
import { serviceListCommand } from './commands/service-list.ts';
import { statusCommand } from './commands/status.ts';
import { uninstallCommand } from './commands/uninstall.ts';
import { versionCommand } from './commands/version.ts';

/**
 * The built-in `dyad` commands (`completion` is added by the dispatcher, which knows the whole
 * tree). Each lives in src/commands/<words>.ts. Plugins (the lab) add theirs at run time.
 */
export const COMMANDS: readonly Command[] = [
  statusCommand,
  endpointListCommand,
  bpfEndpointListCommand,
  bpfIpcacheListCommand,
  bpfCtListCommand,
  bpfLbListCommand,
  serviceListCommand,
  ipamListCommand,
  identityListCommand,
  policyGetCommand,
  observeCommand,
  monitorCommand,
  uninstallCommand,
  versionCommand,
];
