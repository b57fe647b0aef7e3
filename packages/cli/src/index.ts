export { run } from './main.ts';
export type { Io } from './main.ts';
export { Exit } from './command.ts';
export type { Command, CommandContext } from './command.ts';
export { formatTable, outputFormat } from './table.ts';
