import { labDown, labStatus, labUp } from '@dyad/lab';
import type { Command } from '../command.ts';

/** `dyad lab up|down|status`: the same as `npm run lab -- up|down|status`. */
export const labAdminCommands: readonly Command[] = [
  {
    words: ['lab', 'up'],
    summary: 'starts the local lab: [--nodes N] [--ipv4=false|--ipv6=false]',
    run: (ctx) => labUp(ctx.args, ctx),
  },
  {
    words: ['lab', 'down'],
    summary: 'stops the lab and removes all it made',
    run: (ctx) => labDown(ctx.args, ctx),
  },
  {
    words: ['lab', 'status'],
    summary: "the lab's processes and pods [-o json]",
    run: (ctx) => labStatus(ctx.args, ctx),
  },
];
