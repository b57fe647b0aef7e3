import type { AgentLocation, Command, Io } from './command.ts';

/**
 * Packages that add commands to `dyad` when they are installed next to it, declared as optional
 * peer dependencies in package.json (a test keeps the two lists equal). The CLI never imports
 * them statically: on a node, where they are absent, `dyad` loads nothing of them.
 *
 * A plugin package exports `./dyad-plugin`, a module whose `plugin` export is a `Plugin`.
 */
export const PLUGIN_PACKAGES = ['@dyad/lab'] as const;

/** The module a plugin package exports for `dyad`. */
export const PLUGIN_ENTRY = 'dyad-plugin';

export interface Plugin {
  /** The package it comes from, e.g. `@dyad/lab`. */
  readonly name: string;
  /** Commands it adds; a built-in command with the same words wins. */
  readonly commands: readonly Command[];
  /**
   * Where the agent of a node it knows answers (the lab knows its nodes' sockets), so `--node`
   * reaches it; undefined for a node it does not know.
   */
  locateAgent?(
    node: string,
    env: Io['env'],
  ): AgentLocation | undefined | Promise<AgentLocation | undefined>;
}

function isCommand(v: unknown): v is Command {
  if (typeof v !== 'object' || v === null) return false;
  const c = v as Partial<Record<keyof Command, unknown>>;
  return (
    Array.isArray(c.words) &&
    c.words.length > 0 &&
    c.words.every((w) => typeof w === 'string') &&
    typeof c.summary === 'string' &&
    typeof c.flags === 'object' &&
    c.flags !== null &&
    typeof c.run === 'function'
  );
}

/** The plugin contract checked at run time: the CLI has no compile-time view of its plugins. */
export function isPlugin(v: unknown): v is Plugin {
  if (typeof v !== 'object' || v === null) return false;
  const p = v as Partial<Record<keyof Plugin, unknown>>;
  return (
    typeof p.name === 'string' &&
    Array.isArray(p.commands) &&
    p.commands.every(isCommand) &&
    (p.locateAgent === undefined || typeof p.locateAgent === 'function')
  );
}

/** Imports a module by specifier, resolved from this file (where `dyad` is installed). */
export type ModuleImporter = (specifier: string) => Promise<unknown>;

const importFromHere: ModuleImporter = (specifier) => import(specifier);

/** True when the error says the package itself is not installed (not that it is broken). */
function notInstalled(err: unknown, pkg: string): boolean {
  return (
    (err as { code?: unknown } | null)?.code === 'ERR_MODULE_NOT_FOUND' &&
    err instanceof Error &&
    err.message.includes(`'${pkg}'`)
  );
}

/**
 * The installed plugins. An absent package is silently skipped; one that is present but fails
 * to load or does not keep the contract is reported through `warn` and skipped, so a broken lab
 * never takes `dyad status` down with it.
 */
export async function loadPlugins(
  warn: (message: string) => void,
  importer: ModuleImporter = importFromHere,
  packages: readonly string[] = PLUGIN_PACKAGES,
): Promise<Plugin[]> {
  const out: Plugin[] = [];
  for (const pkg of packages) {
    let mod: unknown;
    try {
      mod = await importer(`${pkg}/${PLUGIN_ENTRY}`);
    } catch (err) {
      if (!notInstalled(err, pkg))
        warn(`plugin ${pkg} failed to load: ${err instanceof Error ? err.message : String(err)}`);
      continue;
    }
    const plugin = (mod as { plugin?: unknown } | null)?.plugin;
    if (isPlugin(plugin)) out.push(plugin);
    else warn(`plugin ${pkg}: its ${PLUGIN_ENTRY} module exports no valid 'plugin'`);
  }
  return out;
}
