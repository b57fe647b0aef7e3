// How the `dyad` image runs Dyad: compiled JavaScript (`npm run build`, tsc into each package's
// dist/). Under the `dyad-dist` exports condition every @dyad/* package resolves to its dist/
// instead of its TypeScript sources, which the image does not carry. The image sets it for
// every process (services and the `dyad` CLI); the lab runs its services the same way.
export const DIST_CONDITION = 'dyad-dist';
export const IMAGE_NODE_OPTIONS = `--conditions=${DIST_CONDITION}`;
