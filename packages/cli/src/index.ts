// The public door of @dyad/cli: running `dyad`, and what a plugin (the lab) needs to add its
// commands through the same strict parser, help and output formats.
export { run } from './main.ts';
export { Exit, defineCommand } from './command.ts';
export { AgentAnswerError, AgentUnreachableError, CliError, UsageError } from './errors.ts';
export {
  OutputFormat,
  cell,
  flagNames,
  formatStructured,
  formatTable,
  isStructured,
  outputFlag,
  outputFormat,
} from './output.ts';
export { toYaml } from './yaml.ts';
export { agentGet } from './agent/client.ts';
export { PLUGIN_ENTRY, PLUGIN_PACKAGES, isPlugin, loadPlugins } from './plugins.ts';
export { parseCommandArgs } from './parse.ts';
export { CLIENT_VERSION } from './commands/version.ts';

export type { RunOptions } from './main.ts';
export type {
  AgentLocation,
  ArgsSpec,
  Command,
  CommandContext,
  FlagSpec,
  FlagSpecs,
  FlagValues,
  Io,
} from './command.ts';
export type { ModuleImporter, Plugin } from './plugins.ts';
export type { Parsed } from './parse.ts';
